//! Shared by the integration tests: where the real model and data live, and
//! how to run the `kioku` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default model packed by `make model` (which `make test` runs first).
pub fn model_path() -> PathBuf {
    std::env::var_os("KIOKU_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models/kioku-tiny-en.safetensors"))
}

/// Where `scripts/fetch_models.py` extracted the pinned sources.
pub fn cache() -> PathBuf {
    std::env::var_os("KIOKU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kioku"))
}

pub fn whisper_source() -> PathBuf {
    cache().join("whisper-tiny.en")
}

pub fn gguf_source() -> PathBuf {
    cache().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn example_wav() -> PathBuf {
    repo().join("examples/what-is-the-capital-of-france.wav")
}

pub fn kioku(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kioku"))
        .args(args)
        .env_remove("KIOKU_MODEL")
        .current_dir(repo())
        .output()
        .expect("kioku binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assistant() -> kioku::assistant::Assistant {
    kioku::assistant::Assistant::load(&model_path(), &candle_core::Device::Cpu)
        .expect("default model loads (run `make model`)")
}

#[allow(unused_imports)] // each test binary uses a different subset
pub use kioku::eval::metrics::wer;

/// candle-transformers' Whisper on the same (imported) weights, as reference.
pub fn reference_whisper(
    imported: &kioku::import::ImportedWhisper,
) -> candle_transformers::models::whisper::model::Whisper {
    use candle_transformers::models::whisper as reference;
    let cfg = &imported.config;
    let vars = imported
        .tensors
        .iter()
        .filter_map(|(k, v)| {
            let name = if let Some(rest) = k.strip_prefix("encoder.") {
                format!("model.encoder.{rest}")
            } else {
                format!("model.decoder.{}", k.strip_prefix("asr_decoder.")?)
            };
            Some((name, v.clone()))
        })
        .collect();
    let vb = candle_nn::VarBuilder::from_tensors(vars, candle_core::DType::F32, &candle_core::Device::Cpu);
    let config = reference::Config {
        num_mel_bins: cfg.n_mels,
        max_source_positions: cfg.max_source_positions,
        d_model: cfg.d_model,
        encoder_attention_heads: cfg.encoder_heads,
        encoder_layers: cfg.encoder_layers,
        vocab_size: cfg.vocab_size,
        max_target_positions: cfg.max_target_positions,
        decoder_attention_heads: cfg.decoder_heads,
        decoder_layers: cfg.decoder_layers,
        suppress_tokens: cfg.suppress_tokens.clone(),
    };
    reference::model::Whisper::load(&vb, config).expect("reference Whisper loads")
}
