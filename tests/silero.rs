//! Silero VAD in our own candle code against the silero-vad package's reference: speech
//! probabilities on speech, silence and noise (tests/fixtures/vad, made by scripts/silero_reference.py).

mod common;

use candle_core::{DType, Device};
use common::*;
use kioku::model::components::VAD;
use kioku::model::file::MappedModel;
use kioku::model::silero::{SileroState, SileroVad, CHUNK};

#[derive(serde::Deserialize)]
struct Reference {
    chunk: usize,
    probabilities: Vec<f32>,
}

#[test]
fn speech_probabilities_match_the_reference() {
    let fixtures = repo().join("tests/fixtures/vad");
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("vad-reference.json")).unwrap()).unwrap();
    assert_eq!(reference.chunk, CHUNK);
    let audio = kioku::audio::read_wav(&fixtures.join("vad-reference.wav")).unwrap();
    assert_eq!(audio.sample_rate, 16_000);
    let mut samples = audio.samples;
    samples.resize(samples.len().next_multiple_of(CHUNK), 0.0);

    let model = MappedModel::open(&model_path()).unwrap();
    let vad = SileroVad::load(&model.weights(&Device::Cpu, DType::F32).unwrap().pp(VAD)).unwrap();
    let mut state = SileroState::new().unwrap();
    let ours: Vec<f32> = samples.chunks(CHUNK).map(|chunk| vad.probability(chunk, &mut state).unwrap()).collect();
    assert_eq!(ours.len(), reference.probabilities.len());
    let (worst, at) = ours
        .iter()
        .zip(&reference.probabilities)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs(), i))
        .fold((0f32, 0), |m, x| if x.0 > m.0 { x } else { m });
    eprintln!("max |Δp| = {worst:.2e} at chunk {at}");
    assert!(
        worst <= 1e-3,
        "max |Δp| = {worst} at chunk {at}: ours {}, reference {}",
        ours[at],
        reference.probabilities[at]
    );
    // The fixture is speech, silence and noise: both kinds of chunk are there to compare.
    assert!(reference.probabilities.iter().filter(|&&p| p > 0.9).count() >= 50);
    assert!(reference.probabilities.iter().filter(|&&p| p < 0.1).count() >= 50);
}
