//! Transcription of real recorded speech (Debian's pocketsphinx-testdata:
//! LibriVox read speech and spoken card names) against its transcripts.

mod common;

use common::*;
use kioku::eval::pocketsphinx;
use std::path::{Path, PathBuf};

/// (wav, reference transcript) pairs: LibriVox read speech, then spoken card names.
fn clips() -> Vec<(PathBuf, String)> {
    let clips = pocketsphinx::real_speech().expect("pocketsphinx-testdata is installed (make deps)");
    clips.into_iter().map(|c| (c.path, c.text)).collect()
}

#[test]
fn real_speech_word_error_rate_is_low() {
    let assistant = assistant();
    let clips = clips();
    assert_eq!(clips.len(), 10);
    let (mut errors, mut words) = (0.0, 0usize);
    for (wav, reference) in &clips {
        let samples = kioku::assistant::load_audio_16k(wav).unwrap();
        let (text, _) = assistant.transcribe(&samples).unwrap();
        let n = reference.split_whitespace().count();
        let clip_wer = wer(reference, &text);
        eprintln!(
            "WER {clip_wer:.3}  {}\n   ref: {reference}\n   hyp: {text}",
            wav.file_name().unwrap().to_string_lossy()
        );
        errors += clip_wer * n as f64;
        words += n;
    }
    let total = errors / words as f64;
    eprintln!("overall WER on {} clips ({words} words): {total:.3}", clips.len());
    assert!(total < 0.12, "WER {total:.3} is above the 0.12 bound");
}

#[test]
fn transcribe_json_gives_file_and_text_per_line() {
    let wav = Path::new(pocketsphinx::DATA_DIR).join("librivox/sense_and_sensibility_01_austen_64kb-0930.wav");
    let out = kioku(&["transcribe", "--json", wav.to_str().unwrap(), example_wav().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["file"].as_str().unwrap().ends_with("0930.wav"));
    assert!(wer("he might even have been made amiable himself", lines[0]["text"].as_str().unwrap()) < 0.2);
    assert!(lines[1]["text"].as_str().unwrap().to_lowercase().contains("capital of france"));
}

/// A clip longer than 30 s goes through in 30 s windows.
#[test]
fn long_clip_is_transcribed_in_windows() {
    let assistant = assistant();
    let mut samples = Vec::new();
    let mut reference = String::new();
    for (wav, text) in clips() {
        samples.extend(kioku::assistant::load_audio_16k(&wav).unwrap());
        samples.extend(std::iter::repeat_n(0.0, 8000));
        reference.push_str(&text);
        reference.push(' ');
    }
    assert!(samples.len() > 16_000 * 30, "the joined clip must exceed one window");
    let mut segments = Vec::new();
    let (text, _) = assistant.transcribe_segments(&samples, &[], None, &mut |s| segments.push(s.clone())).unwrap();
    let w = wer(&reference, &text);
    eprintln!("long clip ({:.1} s) WER {w:.3}: {text}", samples.len() as f64 / 16_000.0);
    assert!(w < 0.3, "WER {w:.3} on the windowed long clip");
    // One segment per window, in order, reported as decoded, joining into the transcript.
    let seconds = samples.len() as f64 / 16_000.0;
    assert_eq!(segments.len(), (seconds / 29.5).ceil() as usize);
    for (i, s) in segments.iter().enumerate() {
        assert_eq!((s.index, s.start_s), (i, i as f64 * 29.5));
        assert!(s.start_s < s.end_s && s.end_s <= seconds + 0.05, "{s:?}");
    }
    assert_eq!(segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ").trim(), text);
}

#[test]
fn a_prompt_conditions_the_transcript_style() {
    let assistant = assistant();
    let samples = kioku::assistant::load_audio_16k(&example_wav()).unwrap();
    let transcribe = |prompt| assistant.transcribe_segments(&samples, &[], prompt, &mut |_| {}).unwrap().0;
    assert_eq!(transcribe(None), "What is the capital of France?");
    assert_eq!(transcribe(Some("what is the capital of france")), "what is the capital of france?");
    assert_eq!(transcribe(Some("WHAT IS THE CAPITAL OF FRANCE")), "WHAT IS THE CAPITAL OF FRANCE?");
}
