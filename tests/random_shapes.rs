//! `kioku pack --random-shapes`: a model from a seed alone. The tiny one is
//! the suite's hermetic model (it runs every command, and the fast path is
//! checked against the dense reference on it); the default one has exactly
//! the default model's tensors, so speed can be measured without downloads.

mod common;

use common::*;
use kioku::model::file::MappedModel;
use kioku::parity::{check, DEFAULT_TOLERANCE};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn pack_random(shapes: &str, seed: u64, dir: &Path) -> PathBuf {
    let path = dir.join(format!("random-{shapes}-{seed}.safetensors"));
    let out = kioku(&["pack", "--random-shapes", shapes, "--seed", &seed.to_string(), "-o", path.to_str().unwrap()]);
    assert!(out.status.success(), "pack --random-shapes {shapes} failed: {}", stderr(&out));
    path
}

#[test]
fn tiny_model_packs_fast_and_runs_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let model = pack_random("tiny", 1, dir.path());
    // 0.25 s measured (debug build); the bound leaves room for a loaded machine.
    assert!(start.elapsed() < Duration::from_secs(5), "packing the tiny model took {:?}", start.elapsed());
    let model = model.to_str().unwrap();
    let info = kioku(&["info", model]);
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(stdout(&info).contains("random-shapes:tiny:seed=1"), "{}", stdout(&info));
    let wav = example_wav();
    let wav = wav.to_str().unwrap();
    for args in [
        vec!["ask", "--model", model, "--text", "hi", "--max-tokens", "4"],
        vec!["ask", "--model", model, "--max-tokens", "4", wav],
        vec!["transcribe", "--model", model, wav],
        vec!["listen", "--model", model, "--fast", "--max-tokens", "4", "--input", wav],
    ] {
        let out = kioku(&args);
        assert!(out.status.success(), "kioku {args:?} failed: {}", stderr(&out));
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read(pack_random("tiny", 3, &dir.path().join("a"))).unwrap();
    let again = std::fs::read(pack_random("tiny", 3, &dir.path().join("b"))).unwrap();
    let other = std::fs::read(pack_random("tiny", 4, dir.path())).unwrap();
    assert!(first == again, "two packs with seed 3 differ");
    assert!(first != other, "seeds 3 and 4 gave the same file");
}

#[test]
fn random_and_checkpoint_sources_conflict() {
    let out = kioku(&["pack", "--random-shapes", "tiny", "--llm", "x.gguf", "-o", "/dev/null"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

#[test]
fn default_shapes_are_the_default_model_tensor_for_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let random = MappedModel::open(&pack_random("default", 0, dir.path())).unwrap();
    let real = MappedModel::open(&model_path()).expect("default model (run `make model`)");
    let describe = |m: &MappedModel| -> Vec<String> {
        m.tensor_infos().unwrap().into_iter().map(|t| format!("{} {} {:?}", t.name, t.dtype, t.shape)).collect()
    };
    let (random_tensors, real_tensors) = (describe(&random), describe(&real));
    let differing: Vec<_> = random_tensors.iter().zip(&real_tensors).filter(|(a, b)| a != b).take(5).collect();
    assert!(differing.is_empty() && random_tensors.len() == real_tensors.len(), "first differences: {differing:?}");
    assert_eq!(random.header.projector, real.header.projector);
    assert_eq!(random.header.speech_lora, real.header.speech_lora);
    let shape_of = |m: &MappedModel| {
        let (w, l) = (&m.header.whisper, &m.header.llm);
        (
            w.d_model,
            w.encoder_layers,
            w.encoder_heads,
            w.decoder_layers,
            w.vocab_size,
            l.num_attention_heads,
            l.num_key_value_heads,
            l.head_dim,
        )
    };
    assert_eq!(shape_of(&random), shape_of(&real));
}

/// The hermetic parity check (kioku::parity, also run CPU against CUDA by
/// scripts/gpu-check.sh): packed q8 kernels, fused ops and LoRA terms against
/// the dense f32 reference. Measured here: at most 1.5% of the logits'
/// standard deviation apart, same greedy tokens in every case.
#[test]
fn tiny_model_fast_path_matches_the_dense_reference() {
    let dir = tempfile::tempdir().unwrap();
    let cases = check(&pack_random("tiny", 1, dir.path()), &candle_core::Device::Cpu, 8).unwrap();
    assert_eq!(cases.len(), 6);
    for case in &cases {
        assert!(case.passes(DEFAULT_TOLERANCE), "{case:?}");
        if let Some(effect) = case.adapter_effect {
            assert!(effect > 0.1 * case.logit_std, "the adapter barely acts in {}: {effect}", case.name);
        }
    }
}
