//! `kioku eval --study` prepares its arms: every adaptation, discount and
//! merge of the study, each with its cost, on a tiny setting (a 12-utterance
//! corpus, 2 clips of the new speaker, 2 training steps); and a second run
//! reuses what the first one made.

mod common;

use candle_core::Device;
use common::*;
use kioku::adapt::trainer::AdaptConfig;
use kioku::eval::study::{prepare, StudyOptions};

#[test]
fn a_tiny_study_prepares_every_arm_with_its_cost_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let clips = kioku::corpus::plan(0, Some(12)).unwrap();
    kioku::corpus::generate(&corpus, &clips, 2, &|| {}).expect("espeak-ng and sox are installed (make deps)");
    let mut options = StudyOptions::new(&model_path(), &corpus, &dir.path().join("study"));
    options.train_clips = 2;
    options.held_out_clips = 1;
    options.buffer_clips = 3;
    options.buffer_text_items = 1;
    options.discounts = vec![0.5];
    options.adapt = AdaptConfig { steps: 2, batch_size: 2, replay_ratio: 0.5, ..AdaptConfig::default() };

    let study = prepare(&options, &Device::Cpu, &mut |_| {}).unwrap();
    let names: Vec<&str> = study.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "base",
            "naive",
            "naive-x0.5",
            "naive-merge",
            "replay",
            "replay-x0.5",
            "replay-merge",
            "llm-naive",
            "llm-replay",
            "llm-gated",
            "llm-gated-answer"
        ]
    );
    assert_eq!(kioku::corpus::read_transcribed_dir(&study.held_out).unwrap().len(), 1);
    for arm in &study.arms[1..] {
        let (seconds, megabytes) = (arm.cost.train_seconds.unwrap(), arm.cost.megabytes.unwrap());
        assert!(seconds > 0.0 && megabytes > 0.0, "{}: {:?}", arm.name, arm.cost);
        assert!(arm.model.exists());
        // Loading proves each adapter fits the model it is paired with.
        kioku::assistant::Assistant::load_with_adapters(&arm.model, &Device::Cpu, &arm.adapters).unwrap();
    }
    let merged = &study.arms[3];
    assert!(merged.adapters.is_empty() && merged.model != model_path());
    assert!(merged.cost.megabytes.unwrap() > 100.0, "a merged model costs a whole model file");

    let again = prepare(&options, &Device::Cpu, &mut |_| {}).unwrap();
    for (first, second) in study.arms.iter().zip(&again.arms).filter(|(a, _)| !a.name.ends_with("merge")) {
        // Reused means the recorded seconds come back (to JSON's float precision: serde_json's
        // default parser can be one ulp off); a retrained arm would take a new time.
        let (a, b) = (first.cost.train_seconds, second.cost.train_seconds);
        let same = match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => a == b,
        };
        assert!(same, "{} was trained again: {a:?} s, then {b:?} s", first.name);
    }
}

#[test]
fn an_unknown_study_voice_is_one_clear_error_listing_the_test_voices() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, study) = (dir.path().join("corpus"), dir.path().join("study"));
    std::fs::create_dir_all(&corpus).unwrap();
    let out = kioku(&[
        "eval",
        "--study",
        "--corpus",
        corpus.to_str().unwrap(),
        "--study-dir",
        study.to_str().unwrap(),
        "--study-voice",
        "nobody",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown voice \"nobody\"") && err.contains("en-us-nyc+m7-s170-p55"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
