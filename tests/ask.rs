//! Answering the example question, typed and spoken (cascade), through the CLI.

mod common;

use common::*;

fn ask_json(args: &[&str]) -> serde_json::Value {
    let out = kioku(args);
    assert!(out.status.success(), "kioku {args:?} failed: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).expect("one JSON object")
}

#[test]
fn typed_question_is_answered_with_paris() {
    let v = ask_json(&["ask", "--json", "--text", "What is the capital of France?"]);
    let answer = v["answer"].as_str().unwrap();
    assert!(answer.contains("Paris"), "answer: {answer}");
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn spoken_question_is_answered_with_paris_by_cascade() {
    let wav = example_wav();
    let v = ask_json(&["ask", "--json", "--mode", "cascade", wav.to_str().unwrap()]);
    let transcript = v["transcript"].as_str().unwrap().to_lowercase();
    assert!(transcript.contains("capital of france"), "transcript: {transcript}");
    assert!(v["answer"].as_str().unwrap().contains("Paris"), "answer: {}", v["answer"]);
    assert!(v["file"].as_str().unwrap().ends_with(".wav"));
    for key in ["load", "mel", "encoder", "asr_decode", "prefill", "first_token", "decode", "total"] {
        assert!(v["timings_ms"][key].as_f64().is_some_and(|t| t >= 0.0), "timings_ms.{key} missing: {v}");
    }
    assert!(v["timings_ms"]["encoder"].as_f64().unwrap() > 0.0);
}

#[test]
fn answer_streams_to_stdout_as_plain_text() {
    let out = kioku(&["ask", "--text", "What is the capital of France?", "--max-tokens", "40"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Paris"));
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let args = [
        "ask",
        "--json",
        "--text",
        "Name a colour.",
        "--temperature",
        "0.9",
        "--top-p",
        "0.9",
        "--seed",
        "7",
        "--max-tokens",
        "12",
    ];
    let (a, b) = (ask_json(&args), ask_json(&args));
    assert_eq!(a["answer"], b["answer"]);
}

/// Runs kioku in `dir` with `data_home` as XDG_DATA_HOME and no KIOKU_MODEL.
fn kioku_elsewhere(dir: &std::path::Path, data_home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kioku"))
        .args(args)
        .env_remove("KIOKU_MODEL")
        .env("XDG_DATA_HOME", data_home)
        .current_dir(dir)
        .output()
        .expect("kioku binary runs")
}

#[test]
fn the_default_model_is_found_in_the_data_directory_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let data_home = tempfile::tempdir().unwrap();
    let question = ["ask", "--json", "--text", "What is the capital of France?"];

    // Nothing installed: one line that says where to get a model.
    let out = kioku_elsewhere(elsewhere.path(), data_home.path(), &question);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("make install") && e.contains(&data_home.path().join("kioku/models").display().to_string()),
        "{e}"
    );

    // Installed as `make install` does (a link stands in for the copy).
    let models = data_home.path().join("kioku/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(model_path(), models.join(kioku::home::DEFAULT_MODEL_FILE)).unwrap();
    let out = kioku_elsewhere(elsewhere.path(), data_home.path(), &question);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(v["answer"].as_str().unwrap().contains("Paris"), "{v}");
}
