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
    let args = ["ask", "--json", "--text", "Name a colour.", "--temperature", "0.9", "--top-p", "0.9", "--seed", "7", "--max-tokens", "12"];
    let (a, b) = (ask_json(&args), ask_json(&args));
    assert_eq!(a["answer"], b["answer"]);
}
