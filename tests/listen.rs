//! `kioku listen` on recordings synthesised in a temp dir with espeak-ng and sox: utterances found
//! and answered in order, silence and steady noise ignored, long speech split, and the one-line
//! error when there is no microphone.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// (espeak-ng voice, question, a word its transcript must contain)
const QUESTIONS: [(&str, &str, &str); 3] = [
    ("en-us", "What is the capital of France?", "france"),
    ("en-gb", "How many days are in a week?", "week"),
    ("en-us+f3", "What colour is the sky?", "sky"),
];

fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (`make demo` installs espeak-ng and sox): {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn speak(dir: &Path, name: &str, voice: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wav"));
    tool("espeak-ng", &["-v", voice, "-s", "140", "-w", path_str(&path), text]);
    path
}

/// `seconds` of digital silence at espeak-ng's rate.
fn silence(dir: &Path, seconds: f64) -> PathBuf {
    let path = dir.join(format!("silence-{seconds}.wav"));
    tool("sox", &["-n", "-r", "22050", "-c", "1", "-b", "16", path_str(&path), "trim", "0", &seconds.to_string()]);
    path
}

/// Joins the parts into a 44.1 kHz stereo recording, like a sound card's, and returns where each
/// part starts and ends (s).
fn record(out: &Path, parts: &[PathBuf]) -> Vec<(f64, f64)> {
    let mut args: Vec<&str> = parts.iter().map(|p| path_str(p)).collect();
    args.extend(["-r", "44100", "-c", "2", "-b", "16", path_str(out)]);
    tool("sox", &args);
    let mut at = 0.0;
    parts
        .iter()
        .map(|part| {
            let audio = kioku::audio::read_wav(part).unwrap();
            let start = at;
            at += audio.samples.len() as f64 / f64::from(audio.sample_rate);
            (start, at)
        })
        .collect()
}

fn listen_json(wav: &Path, extra: &[&str]) -> Vec<Value> {
    listen_json_paced(wav, true, extra)
}

/// `fast`: the file is read as fast as it can be; otherwise at real-time pace, as a microphone
/// delivers it, so that answers worked out during a pause race the silence as they do live.
fn listen_json_paced(wav: &Path, fast: bool, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["listen", "--input", path_str(wav), "--json"];
    if fast {
        args.push("--fast");
    }
    args.extend(extra);
    let out = kioku(&args);
    assert!(out.status.success(), "kioku {args:?} failed: {}", stderr(&out));
    stdout(&out).lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

fn seconds(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {v}"))
}

/// The endpointers under test: Silero (the default, with early answers) and the energy fallback.
const DETECTORS: [&[&str]; 2] = [&[], &["--vad", "energy"]];

#[test]
fn three_questions_are_heard_and_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (gap, edge) = (silence(dir.path(), 1.5), silence(dir.path(), 1.0));
    let mut parts = vec![edge.clone()];
    for (i, (voice, question, _)) in QUESTIONS.iter().enumerate() {
        parts.push(speak(dir.path(), &format!("q{i}"), voice, question));
        parts.push(if i + 1 < QUESTIONS.len() { gap.clone() } else { edge.clone() });
    }
    let rec = dir.path().join("rec.wav");
    let spans = record(&rec, &parts);
    for detector in DETECTORS {
        let mut args = vec!["--max-tokens", "32"];
        args.extend(detector);
        check_three_replies(&listen_json(&rec, &args), &spans);
    }
}

/// Each reply answers its question, heard whole, in order.
fn check_three_replies(replies: &[Value], spans: &[(f64, f64)]) {
    assert_eq!(replies.len(), 3, "{replies:#?}");
    let mut previous_end = 0.0;
    for (i, ((_, question, word), reply)) in QUESTIONS.iter().zip(replies).enumerate() {
        let transcript = reply["transcript"].as_str().unwrap_or_default();
        assert!(
            transcript.to_lowercase().contains(word) && wer(question, transcript) <= 0.5,
            "{question} heard as {transcript:?}"
        );
        assert!(!reply["answer"].as_str().unwrap_or_default().is_empty(), "no answer: {reply}");
        assert!(seconds(reply, "latency_ms") > 0.0);
        // The question is part 2i+1; speech must be found inside it, after the previous one.
        let (part_start, part_end) = spans[2 * i + 1];
        let (start, end) = (seconds(reply, "start_s"), seconds(reply, "end_s"));
        assert!(
            start > previous_end && start >= part_start - 0.05 && start < end && end <= part_end + 0.05,
            "{reply} vs part {part_start:.2}-{part_end:.2} s"
        );
        assert!(end - start >= 0.5 * (part_end - part_start), "most of the question is heard: {reply}");
        previous_end = end;
    }
}

/// espeak-ng's clip of `text` without its leading and trailing silence, so a pause put after it is
/// exactly as long as asked.
fn speak_trimmed(dir: &Path, name: &str, voice: &str, text: &str) -> PathBuf {
    let raw = speak(dir, &format!("{name}-raw"), voice, text);
    let path = dir.join(format!("{name}.wav"));
    let trim = ["silence", "1", "0.005", "0.5%"];
    let mut args = vec![path_str(&raw), path_str(&path)];
    args.extend(trim);
    args.push("reverse");
    args.extend(trim);
    args.push("reverse");
    tool("sox", &args);
    path
}

#[test]
fn pauses_of_300_to_400_ms_do_not_split_a_question() {
    let dir = tempfile::tempdir().unwrap();
    // (voice, before the pause, after it, pause in s)
    let questions = [
        ("en-us", "What is the capital", "of France?", 0.3),
        ("en-gb", "How many days", "are in a week?", 0.35),
        ("en-us+f3", "Tell me,", "what colour is the sky?", 0.4),
    ];
    let (gap, edge) = (silence(dir.path(), 1.5), silence(dir.path(), 1.0));
    let mut parts = vec![edge.clone()];
    for (i, (voice, first, second, pause)) in questions.iter().enumerate() {
        parts.push(speak_trimmed(dir.path(), &format!("q{i}a"), voice, first));
        parts.push(silence(dir.path(), *pause));
        parts.push(speak_trimmed(dir.path(), &format!("q{i}b"), voice, second));
        parts.push(if i + 1 < questions.len() { gap.clone() } else { edge.clone() });
    }
    let rec = dir.path().join("rec.wav");
    let spans = record(&rec, &parts);
    // In real time: the words before each pause are judged while the pause lasts, and must not
    // be taken for a finished question (12 s).
    let replies = listen_json_paced(&rec, false, &["--max-tokens", "4"]);
    assert_eq!(replies.len(), 3, "one utterance per question: {replies:#?}");
    for (i, ((_, first, second, pause), reply)) in questions.iter().zip(&replies).enumerate() {
        // Parts 4i+1 and 4i+3 are the two halves: one utterance spans both.
        let (first_half, second_half) = (spans[4 * i + 1], spans[4 * i + 3]);
        let (start, end) = (seconds(reply, "start_s"), seconds(reply, "end_s"));
        assert!(
            start <= first_half.0 + 0.1 && end >= second_half.1 - 0.1,
            "\"{first}\" + {pause} s + \"{second}\" ({:.2}-{:.2} s) heard as {reply}",
            first_half.0,
            second_half.1
        );
    }
}

#[test]
fn silence_alone_is_not_an_utterance() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.wav");
    record(&rec, &[silence(dir.path(), 5.0)]);
    for detector in DETECTORS {
        assert_eq!(listen_json(&rec, detector), Vec::<Value>::new(), "{detector:?}");
    }
}

#[test]
fn steady_noise_is_not_an_utterance() {
    let dir = tempfile::tempdir().unwrap();
    for noise in ["whitenoise", "brownnoise", "pinknoise"] {
        let rec = dir.path().join(format!("{noise}.wav"));
        // Quiet first, so the noise floor has to catch up with the noise.
        let quiet = silence(dir.path(), 1.0);
        let noisy = dir.path().join(format!("{noise}-only.wav"));
        tool(
            "sox",
            &["-R", "-n", "-r", "22050", "-c", "1", "-b", "16", path_str(&noisy), "synth", "6", noise, "vol", "-30dB"],
        );
        record(&rec, &[quiet, noisy]);
        for detector in DETECTORS {
            assert_eq!(listen_json(&rec, detector), Vec::<Value>::new(), "{noise} {detector:?}");
        }
    }
}

#[test]
fn speech_longer_than_the_maximum_utterance_is_split() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Tell me a story about a brave little fox who lived at the edge of a quiet forest and dreamed of seeing the sea one day.";
    let rec = dir.path().join("rec.wav");
    let edge = silence(dir.path(), 1.0);
    let spans = record(&rec, &[edge.clone(), speak(dir.path(), "long", "en-us", text), edge]);
    let replies = listen_json(&rec, &["--max-utterance", "2", "--max-tokens", "4"]);
    assert!(replies.len() >= 3, "{:.1} s of speech in at least three pieces: {replies:#?}", spans[1].1 - spans[1].0);
    for pair in replies.windows(2) {
        assert!(seconds(&pair[0], "end_s") <= seconds(&pair[1], "start_s"), "pieces follow each other: {replies:#?}");
    }
    assert!(replies.iter().all(|r| seconds(r, "end_s") - seconds(r, "start_s") <= 2.0 + 1e-9), "{replies:#?}");
}

#[test]
fn without_a_microphone_listen_fails_at_once_with_one_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kioku"))
        .arg("listen")
        .env_remove("KIOKU_MODEL")
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let err = stderr(&out);
            assert!(!out.status.success());
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains("no microphone") && err.contains("--input FILE.wav"), "{err}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("skipped: this machine has a working microphone, so `kioku listen` kept listening");
}

#[test]
fn bad_listen_input_fails_with_one_line() {
    let out = kioku(&["listen", "--input", "no/such/file.wav"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot open no/such/file.wav"), "{}", stderr(&out));

    let wav = example_wav();
    let listen = ["listen", "--input", path_str(&wav), "--fast", "--max-tokens", "2"];
    for (flags, expected) in [
        (&["--max-utterance", "0"][..], "maximum utterance length"),
        (&["--vad-threshold", "2"], "speech probability threshold must be in"),
        (&["--early-answer-ms", "400"], "must be shorter than the hangover (400 ms)"),
        (&["--turn-end-ms", "500"], "must be at most the hangover (400 ms)"),
        (&["--turn-end-probability", "2"], "end-of-turn probability must be in [0, 1]"),
    ] {
        let out = kioku(&[&listen[..], flags].concat());
        assert!(!out.status.success(), "{flags:?}");
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{flags:?}: {}", stderr(&out));
    }
    // Each detector's settings are checked against its own defaults: 500 ms is fine with energy's 700.
    let out = kioku(&[&listen[..], &["--vad", "energy", "--early-answer-ms", "500"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[cfg(feature = "mic")]
#[test]
fn devices_are_listed_or_their_absence_is_said() {
    let out = kioku(&["devices"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).is_empty() || stderr(&out).contains("no input devices"), "{}", stderr(&out));
}

/// Plays chunks as if live, then fails the way a microphone that is unplugged does.
struct UnpluggedAfter {
    chunks: std::vec::IntoIter<Vec<f32>>,
    sample_rate: u32,
}

impl kioku::listen::AudioSource for UnpluggedAfter {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn is_realtime(&self) -> bool {
        true
    }

    fn next_chunk(&mut self) -> anyhow::Result<Option<(Vec<f32>, Instant)>> {
        match self.chunks.next() {
            Some(chunk) => Ok(Some((chunk, Instant::now()))),
            None => anyhow::bail!("lost the input device `test`: unplugged"),
        }
    }
}

#[test]
fn a_lost_device_ends_listening_after_answering_what_was_heard() {
    use kioku::listen::{listen, Detector, Endpointing, Event, ListenOptions};
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("heard.wav");
    record(
        &heard,
        &[silence(dir.path(), 0.5), speak(dir.path(), "q", "en-us", QUESTIONS[0].1), silence(dir.path(), 1.5)],
    );
    let audio = kioku::audio::read_wav(&heard).unwrap();
    let mut source = UnpluggedAfter {
        chunks: audio.samples.chunks(441).map(<[f32]>::to_vec).collect::<Vec<_>>().into_iter(),
        sample_rate: audio.sample_rate,
    };
    let options = ListenOptions {
        mode: kioku::assistant::Mode::Cascade,
        sampling: kioku::generation::SamplingOptions { max_tokens: 16, ..Default::default() },
        endpointing: Endpointing::Voice(Detector::Silero.default_config(), Detector::Silero),
    };
    let mut replies = Vec::new();
    let result = listen(&assistant(), &mut source, &options, None, |event| {
        if let Event::Answered(reply) = event {
            replies.push(reply.clone());
        }
    });
    assert_eq!(result.unwrap_err().to_string(), "lost the input device `test`: unplugged");
    assert_eq!(replies.len(), 1, "{replies:?}");
    // Heard and answered; whether Whisper tiny hears "of France" or "and friends" in this voice
    // depends on where the clip falls against the resampler's and the detector's blocks
    // (docs/BENCHMARKS.md, "Live listening"), and `three_questions_are_heard_and_answered_in_order` checks the words.
    let transcript = replies[0].transcript.as_deref().unwrap_or_default().to_lowercase();
    assert!(transcript.contains("what is the capital"), "{replies:?}");
    assert!(!replies[0].answer.trim().is_empty(), "{replies:?}");
    assert!(replies[0].latency_ms > 0.0);
}

#[test]
fn the_llm_tells_half_a_question_from_a_whole_one() {
    let assistant = assistant();
    let threshold = kioku::audio::VadConfig::default().turn_end_probability;
    let probability = |words: &str| assistant.end_of_turn_probability(words).unwrap();
    // Whisper's transcripts of the halves before a pause, punctuated as it writes them.
    for half in
        ["What is the capital?", "how many days.", "Can you tell me?", "I was wondering...", "What is too plus?", ""]
    {
        let p = probability(half);
        assert!(p < threshold, "\"{half}\" read as a whole turn: {p}");
    }
    for whole in ["What is the capital of France?", "How many days are in a week?", "What color is the sky?"] {
        let p = probability(whole);
        assert!(p >= threshold, "\"{whole}\" read as half a turn: {p}");
    }
}

/// The cue across the corpus's questions (every tenth), as Whisper writes them when it hears them
/// right, and their first halves (four words or more, cut after half the words): how often an
/// answer can start at `turn_end_ms` instead of after the whole hangover, and how often a pause
/// would split a question. On all 2244 questions: 94.6 % of the whole ones and 6.1 % of the
/// halves, most of which are questions themselves ("What time is it", "Am I busy").
#[test]
fn the_finished_turn_cue_fires_on_most_whole_questions_and_few_halves() {
    let assistant = assistant();
    let threshold = kioku::audio::VadConfig::default().turn_end_probability;
    let fires = |words: &str| assistant.end_of_turn_probability(words).unwrap() >= threshold;
    let questions: Vec<String> = kioku::corpus::utterance_bank()
        .into_iter()
        .filter(|u| u.kind == kioku::corpus::Kind::Question)
        .step_by(10)
        .map(|u| u.text)
        .collect();
    let halves: Vec<String> = questions
        .iter()
        .map(|q| q.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.len() >= 4)
        .map(|words| words[..words.len() / 2].join(" "))
        .collect();
    let share = |texts: &[String]| texts.iter().filter(|t| fires(t)).count() as f64 / texts.len() as f64;
    let (whole, half) = (share(&questions), share(&halves));
    eprintln!(
        "the cue fires on {:.1} % of {} questions and {:.1} % of {} halves",
        100.0 * whole,
        questions.len(),
        100.0 * half,
        halves.len()
    );
    assert!(whole >= 0.9, "the cue fires on only {:.1} % of whole questions", 100.0 * whole);
    assert!(half <= 0.1, "the cue fires on {:.1} % of half questions", 100.0 * half);
}
