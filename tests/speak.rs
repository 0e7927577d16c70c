//! Spoken answers: `--speak-to FILE.wav` writes what espeak-ng says, which kioku's own Whisper
//! must hear back as the answer; `--speak` without a sound output says so in one line and still
//! prints the answer.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// What kioku's Whisper hears in `wav`, in lower case.
fn heard(wav: &Path) -> String {
    let out = kioku(&["transcribe", wav.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).to_lowercase()
}

fn seconds_of(wav: &Path) -> f64 {
    let audio = kioku::audio::read_wav(wav).unwrap();
    audio.samples.len() as f64 / f64::from(audio.sample_rate)
}

#[test]
fn ask_speak_to_writes_the_spoken_answer() {
    let dir = tempfile::tempdir().unwrap();
    let spoken = dir.path().join("answer.wav");
    let wav = example_wav();
    let out = kioku(&["ask", "--json", "--speak-to", spoken.to_str().unwrap(), wav.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(answer["answer"].as_str().unwrap().contains("Paris"), "{answer}");
    let first_audio = answer["first_audio_ms"].as_f64().expect("first_audio_ms with --speak-to");
    assert!(first_audio >= answer["timings_ms"]["first_token"].as_f64().unwrap(), "{answer}");
    assert!(seconds_of(&spoken) > 1.0, "{} s", seconds_of(&spoken));
    assert!(heard(&spoken).contains("paris"), "{}", heard(&spoken));
}

#[test]
fn listen_speak_to_says_every_answer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let question = |name: &str, voice: &str, text: &str| {
        let path = dir.path().join(format!("{name}.wav"));
        let out = std::process::Command::new("espeak-ng")
            .args(["-v", voice, "-s", "140", "-w", path.to_str().unwrap(), text])
            .output()
            .unwrap();
        assert!(out.status.success());
        path
    };
    let (q0, q1) =
        (question("q0", "en-us", "What is the capital of France?"), question("q1", "en-gb", "What colour is the sky?"));
    let silence = dir.path().join("silence.wav");
    let rec = dir.path().join("rec.wav");
    let sox = |args: &[&str]| assert!(std::process::Command::new("sox").args(args).status().unwrap().success());
    sox(&["-n", "-r", "22050", "-c", "1", "-b", "16", silence.to_str().unwrap(), "trim", "0", "1.0"]);
    let s = silence.to_str().unwrap();
    sox(&[s, q0.to_str().unwrap(), s, q1.to_str().unwrap(), s, rec.to_str().unwrap()]);

    let spoken = dir.path().join("answers.wav");
    let out = kioku(&[
        "listen",
        "--input",
        rec.to_str().unwrap(),
        "--fast",
        "--json",
        "--max-tokens",
        "12",
        "--speak-to",
        spoken.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replies: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replies.len(), 2, "{replies:#?}");
    for reply in &replies {
        let (latency, first_audio) =
            (reply["latency_ms"].as_f64().unwrap(), reply["first_audio_ms"].as_f64().expect("first_audio_ms"));
        assert!(first_audio >= latency, "{reply}");
    }
    let heard = heard(&spoken);
    let (paris, sky) = (heard.find("paris"), heard.find("sky").or(heard.find("blue")));
    assert!(paris.is_some() && sky.is_some() && paris < sky, "both answers, in order: {heard}");
}

#[test]
fn speak_without_a_sound_output_prints_the_answer_and_says_so_once() {
    let out = kioku(&["ask", "--speak", "--text", "What is the capital of France?", "--max-tokens", "12"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Paris"), "{}", stdout(&out));
    let err = stderr(&out);
    if err.trim().is_empty() {
        eprintln!("skipped: this machine has a working sound output, so the answer was spoken");
        return;
    }
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("no audio output") && err.contains("--speak-to"), "{err}");
}

#[test]
fn an_unknown_voice_or_output_device_is_said_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let spoken = dir.path().join("answer.wav");
    let out = kioku(&[
        "ask",
        "--speak-to",
        spoken.to_str().unwrap(),
        "--voice",
        "nosuchvoice",
        "--text",
        "Hi",
        "--max-tokens",
        "4",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("espeak-ng failed") && err.contains("voice does not exist"), "{err}");

    // A sound output that is not there: the answer is still printed.
    let out = kioku(&[
        "ask",
        "--speak",
        "--output-device",
        "no-such-device",
        "--text",
        "What is the capital of France?",
        "--max-tokens",
        "12",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Paris"), "{}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("no output device is named `no-such-device`"), "{err}");
}

#[test]
fn speak_to_an_unwritable_place_fails_clearly() {
    let out = kioku(&["ask", "--speak-to", "/dev/null/answer.wav", "--text", "Hi", "--max-tokens", "4"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("cannot write the spoken answer to /dev/null/answer.wav"), "{err}");
}
