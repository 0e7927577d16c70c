//! Speaker adaptation (`kioku adapt`): training lowers the loss and the WER,
//! a killed run leaves the previous adapter and buffer loadable, a finished
//! one adds the new speaker to the buffer within its cap, bad input is
//! refused clearly. Clips are synthesized here with espeak-ng and sox.

mod common;

use candle_core::Device;
use common::*;
use kioku::adapt::data::{load_recordings, Recording};
use kioku::adapt::replay::{ReplayBuffer, ReplayItem, ReplayLimits};
use kioku::adapt::trainer::{AdaptConfig, SpeakerTrainer, SpokenTarget};
use kioku::assistant::Assistant;
use kioku::corpus::{synthesize_transcribed_dir, utterance_bank, Voice, VOICES};
use kioku::eval::metrics::WerTally;
use kioku::model::peft::{self, AdapterSpec};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A test voice (never heard in the corpus's training split) that the base
/// model transcribes badly: the adaptation has something to fix.
fn hard_voice() -> &'static Voice {
    VOICES.iter().find(|v| v.variant == "grandpa").expect("the grandpa voice exists")
}

/// `n` short utterances from the bank, starting at `skip`, every 7th (varied kinds).
fn texts(skip: usize, n: usize) -> Vec<String> {
    utterance_bank()
        .into_iter()
        .skip(skip)
        .step_by(7)
        .filter(|u| u.text.split_whitespace().count() <= 8)
        .take(n)
        .map(|u| u.text)
        .collect()
}

fn synthesize_dir(dir: &Path, voice: &Voice, texts: &[String]) -> PathBuf {
    synthesize_transcribed_dir(dir, voice, texts).unwrap();
    dir.to_path_buf()
}

fn word_error_rate(assistant: &Assistant, recordings: &[Recording]) -> f64 {
    let mut tally = WerTally::default();
    for r in recordings {
        tally.add(&r.text, &assistant.transcribe(&r.audio_16k).unwrap().0);
    }
    tally.rate()
}

fn with_adapter(dir: &Path) -> Assistant {
    let spec = AdapterSpec { path: dir.to_path_buf(), scale: 1.0 };
    Assistant::load_with_adapters(&model_path(), &Device::Cpu, &[spec]).unwrap()
}

#[test]
fn a_short_adaptation_lowers_the_loss_and_the_wer_on_its_clips() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = load_recordings(&synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(3, 6))).unwrap();
    let before = word_error_rate(&common::assistant(), &recordings);
    let config = AdaptConfig { steps: 12, batch_size: 3, replay_ratio: 0.0, ..AdaptConfig::default() };
    let mut trainer = SpeakerTrainer::new(&model_path(), config, &Device::Cpu).unwrap();
    let loss_before = trainer.speech_loss(&recordings).unwrap();
    for _ in 0..12 {
        trainer.step(&recordings, None).unwrap();
    }
    let loss_after = trainer.speech_loss(&recordings).unwrap();
    let adapter = dir.path().join("adapter");
    peft::save(&trainer.adapter().unwrap(), &adapter, trainer.header(), "test").unwrap();
    drop(trainer);
    let after = word_error_rate(&with_adapter(&adapter), &recordings);
    eprintln!("loss {loss_before:.3} -> {loss_after:.3}, WER {before:.3} -> {after:.3}");
    assert!(loss_after < 0.7 * loss_before, "loss {loss_before} -> {loss_after}");
    assert!(before > 0.0 && after < before, "WER {before} -> {after}");
}

/// With LoRA on the LLM, each new clip also trains the end-to-end repeat task
/// (projected audio -> transcript), and replayed text trains the LLM's own
/// answers. A step fails when any adapter tensor gets no gradient, so steps
/// without replay prove the spoken path reaches every LLM adapter.
#[test]
fn adapting_the_llm_trains_it_on_the_spoken_clips_and_on_replayed_text() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = load_recordings(&synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(6, 3))).unwrap();
    let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), ReplayLimits::default(), 0);
    buffer.offer(ReplayItem::text(
        "t0",
        "base-answers:train",
        "What is the capital of Italy?",
        "The capital of Italy is Rome.",
    ));
    buffer.offer(ReplayItem::text("t1", "base-answers:train", "Name a primary colour.", "Red is a primary colour."));
    let targets = vec!["decoder".to_string(), "llm-attn".to_string()];
    let config = AdaptConfig {
        targets,
        steps: 8,
        batch_size: 3,
        replay_ratio: 0.34,
        llm_on_audio_turns_only: false,
        spoken_target: SpokenTarget::Transcript,
        ..AdaptConfig::default()
    };
    let mut trainer = SpeakerTrainer::new(&model_path(), config, &Device::Cpu).unwrap();
    assert!(trainer.trains_llm());
    let loss_before = trainer.speech_loss(&recordings).unwrap();
    let mut replayed_text = 0;
    for step in 0..8 {
        // Even steps without the buffer: only the spoken task can reach the LLM adapters.
        let replay = (step % 2 == 1).then_some(&buffer);
        replayed_text += trainer.step(&recordings, replay).unwrap().replayed_text;
    }
    let loss_after = trainer.speech_loss(&recordings).unwrap();
    eprintln!("ASR + spoken repeat loss {loss_before:.3} -> {loss_after:.3}; {replayed_text} text items replayed");
    assert!(replayed_text >= 4, "{replayed_text} text items replayed");
    assert!(loss_after < loss_before, "loss {loss_before} -> {loss_after}");
    let adapter = trainer.adapter().unwrap();
    let llm_modules: Vec<_> = adapter.modules.iter().filter(|(m, _)| m.starts_with("llm.")).collect();
    assert!(!llm_modules.is_empty());
    for (module, pair) in llm_modules {
        let moved = pair.b.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(moved > 0.0, "{module} did not train");
    }
}

/// Gated to audio turns, the LLM's adapters learn from the spoken task alone
/// (replayed text would train them on turns they never act on), keep the
/// gate through the adapter file, and leave typed answers exactly as the base
/// model gives them, while spoken answers end-to-end change.
#[test]
fn llm_adapters_gated_to_audio_turns_leave_typed_answers_unchanged() {
    use kioku::assistant::Mode;
    use kioku::generation::SamplingOptions;
    let dir = tempfile::tempdir().unwrap();
    let recordings = load_recordings(&synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(6, 3))).unwrap();
    let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), ReplayLimits::default(), 0);
    buffer.offer(ReplayItem::text("t0", "base-answers:train", "Name a primary colour.", "Red is a primary colour."));
    let targets = vec!["decoder".to_string(), "llm-attn".to_string()];
    let config = AdaptConfig {
        targets,
        steps: 6,
        batch_size: 3,
        replay_ratio: 0.34,
        peak_lr: 3e-3,
        llm_on_audio_turns_only: true,
        spoken_target: SpokenTarget::Transcript,
        ..AdaptConfig::default()
    };
    let mut trainer = SpeakerTrainer::new(&model_path(), config, &Device::Cpu).unwrap();
    assert!(trainer.trains_llm() && !trainer.trains_llm_on_text());
    let mut replayed_text = 0;
    for _ in 0..6 {
        // A step fails when an adapter gets no gradient: the spoken task reaches them all.
        replayed_text += trainer.step(&recordings, Some(&buffer)).unwrap().replayed_text;
    }
    assert_eq!(replayed_text, 0);
    let trained = trainer.adapter().unwrap();
    assert!(trained.audio_turns_only);
    let adapter = dir.path().join("adapter");
    peft::save(&trained, &adapter, trainer.header(), "test").unwrap();
    drop(trainer);

    let (base, adapted) = (common::assistant(), with_adapter(&adapter));
    let sampling = SamplingOptions { max_tokens: 24, ..SamplingOptions::default() };
    for question in ["What is the capital of France?", "Name three colours of the rainbow."] {
        let answer = |a: &Assistant| a.ask_text(question, &sampling, &mut |_| {}).unwrap().answer;
        assert_eq!(answer(&adapted), answer(&base), "typed: {question}");
    }
    let spoken = |a: &Assistant| {
        let tokens = |r: &Recording| a.ask_audio(&r.audio_16k, Mode::E2e, &sampling, &mut |_| {}).unwrap().answer;
        recordings.iter().map(tokens).collect::<Vec<_>>()
    };
    assert_ne!(spoken(&adapted), spoken(&base), "the adapter changes no spoken answer");
}

/// With the typed-answer target, `adapt` first answers each transcript as a
/// typed question with the base model, then teaches the gated LLM adapter to
/// give that answer to the spoken clip: the spoken answers move toward the
/// typed ones (content-word overlap), and typed answers stay the base model's.
#[test]
fn the_typed_answer_target_moves_spoken_answers_toward_the_typed_ones() {
    use kioku::adapt::session::adapt;
    use kioku::assistant::Mode;
    use kioku::eval::metrics::answer_overlap;
    use kioku::generation::SamplingOptions;
    let dir = tempfile::tempdir().unwrap();
    let questions: Vec<String> =
        ["What is the capital of France?", "How many legs does a spider have?", "What colour is the sky?"]
            .map(String::from)
            .to_vec();
    let data = synthesize_dir(&dir.path().join("speaker"), hard_voice(), &questions);
    let config = AdaptConfig {
        targets: vec!["decoder".to_string(), "llm-attn".to_string()],
        steps: 8,
        batch_size: 3,
        replay_ratio: 0.0,
        peak_lr: 3e-3,
        llm_on_audio_turns_only: true,
        spoken_target: SpokenTarget::TypedAnswer,
        // What the LLM learnt, whole: the default discount is checked on its own below.
        llm_scale: 1.0,
        ..AdaptConfig::default()
    };
    let out = dir.path().join("adapter");
    let request = request_without_replay(&data, &out, config);
    let mut notes = Vec::new();
    // Every step checks that each adapter tensor got a gradient.
    adapt(&request, &Device::Cpu, &mut |event| notes.push(format!("{event:?}"))).unwrap();
    assert!(notes.iter().any(|n| n.contains("answering the 3 transcripts")), "{notes:#?}");

    let (base, adapted) = (common::assistant(), with_adapter(&out));
    let recordings = load_recordings(&data).unwrap();
    let sampling = SamplingOptions { max_tokens: 32, ..SamplingOptions::default() };
    let mut overlap = (0.0, 0.0);
    for r in &recordings {
        let typed = base.ask_text(&r.text, &sampling, &mut |_| {}).unwrap().answer;
        assert_eq!(adapted.ask_text(&r.text, &sampling, &mut |_| {}).unwrap().answer, typed);
        let spoken = |a: &Assistant| a.ask_audio(&r.audio_16k, Mode::E2e, &sampling, &mut |_| {}).unwrap().answer;
        overlap.0 += answer_overlap(&spoken(&base), &typed);
        overlap.1 += answer_overlap(&spoken(&adapted), &typed);
    }
    eprintln!("spoken-vs-typed answer overlap, summed over 3 clips: base {:.2} -> adapted {:.2}", overlap.0, overlap.1);
    assert!(overlap.1 > overlap.0, "overlap {overlap:?}");
}

/// `--llm-scale` saves the LLM's adapters at that share of what they learnt, and the Whisper
/// adapters whole: two runs from the same seed differ by exactly that factor in the LLM's B.
#[test]
fn the_llm_adapters_are_saved_at_the_llm_scale() {
    use kioku::adapt::session::adapt;
    let dir = tempfile::tempdir().unwrap();
    let data = synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(6, 2));
    let saved = |llm_scale: f64| {
        let config = AdaptConfig {
            targets: vec!["decoder".to_string(), "llm-attn".to_string()],
            steps: 1,
            batch_size: 2,
            replay_ratio: 0.0,
            peak_lr: 3e-3,
            spoken_target: SpokenTarget::Transcript,
            llm_scale,
            ..AdaptConfig::default()
        };
        let out = dir.path().join(format!("adapter-{llm_scale}"));
        adapt(&request_without_replay(&data, &out, config), &Device::Cpu, &mut |_| {}).unwrap();
        candle_core::safetensors::load(out.join(peft::TENSORS_FILE), &Device::Cpu).unwrap()
    };
    let (whole, discounted) = (saved(1.0), saved(0.25));
    assert_eq!(whole.len(), discounted.len());
    let (mut llm_b, mut others) = (0, 0);
    for (name, tensor) in &whole {
        let values = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (w, d) = (values(tensor), values(&discounted[name]));
        // The LLM's modules carry Hugging Face's names in the file: `model.layers.…`.
        if name.starts_with("base_model.model.model.layers.") && name.contains("lora_B") {
            llm_b += 1;
            assert!(w.iter().any(|&x| x != 0.0), "{name} did not train");
            assert!(w.iter().zip(&d).all(|(w, d)| (w * 0.25 - d).abs() <= 1e-6 * w.abs().max(1e-6)), "{name}");
        } else {
            others += 1;
            assert_eq!(w, d, "{name} changed");
        }
    }
    assert!(llm_b > 0 && others > llm_b, "{llm_b} LLM B factors, {others} other tensors");
}

/// `adapt`'s request for the recordings in `data`, written to `out`, with no replay buffer.
fn request_without_replay(data: &Path, out: &Path, config: AdaptConfig) -> kioku::adapt::session::AdaptRequest {
    kioku::adapt::session::AdaptRequest {
        model: model_path(),
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        config,
        epochs: None,
        replay: kioku::adapt::session::ReplaySource::Off,
        time_budget: None,
        speaker: None,
    }
}

/// Measures the budget of issue 4: 24 utterances of one hard test voice,
/// adapted with the defaults, WER on 8 held-out utterances before and after.
/// Slow (minutes): `cargo test --release --test adapt -- --ignored --nocapture`.
#[test]
#[ignore]
fn twenty_four_utterances_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let voice = hard_voice();
    let all = texts(0, 32);
    let train = synthesize_dir(&dir.path().join("train"), voice, &all[..24]);
    let held_out = load_recordings(&synthesize_dir(&dir.path().join("held-out"), voice, &all[24..])).unwrap();
    let base = word_error_rate(&common::assistant(), &held_out);
    let adapter = dir.path().join("adapter");
    let started = Instant::now();
    let buffer = dir.path().join("replay.kbuf");
    earlier_speaker_buffer(&buffer, &dir.path().join("earlier"), 16);
    let out = kioku(&[
        "adapt",
        "--data",
        train.to_str().unwrap(),
        "--out",
        adapter.to_str().unwrap(),
        "--replay-buffer",
        buffer.to_str().unwrap(),
    ]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", stderr(&out));
    let adapted = word_error_rate(&with_adapter(&adapter), &held_out);
    eprintln!("{}24 utterances adapted in {seconds:.0} s; held-out WER {base:.3} -> {adapted:.3}", stderr(&out));
    assert!(adapted <= base / 2.0, "held-out WER {base} -> {adapted}");
    assert!(seconds <= 180.0, "took {seconds:.0} s");
}

/// A buffer of `n` speech items of a training voice, saved at `path`.
fn earlier_speaker_buffer(path: &Path, clips: &Path, n: usize) {
    let voice = VOICES.iter().find(|v| v.variant == "m1").unwrap();
    let recordings = load_recordings(&synthesize_dir(clips, voice, &texts(5, n))).unwrap();
    let mut buffer = ReplayBuffer::open(path, ReplayLimits::default()).unwrap();
    for r in &recordings {
        buffer.offer(ReplayItem::speech(
            &format!("earlier/{}", r.id),
            "corpus:train",
            &r.audio_16k,
            &r.text,
            "earlier",
        ));
    }
    buffer.save().unwrap();
}

fn adapt_args<'a>(data: &'a str, out: &'a str, buffer: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "adapt",
        "--data",
        data,
        "--out",
        out,
        "--replay-buffer",
        buffer,
        "--steps",
        steps,
        "--batch-size",
        "2",
        "--speaker",
        "newcomer",
    ]
}

#[test]
fn a_finished_adaptation_adds_the_speaker_to_the_buffer_within_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = dir.path().join("replay.kbuf");
    earlier_speaker_buffer(&buffer, &dir.path().join("earlier"), 4);
    let data = synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(2, 4));
    let adapter = dir.path().join("adapter");
    let mut args = adapt_args(data.to_str().unwrap(), adapter.to_str().unwrap(), buffer.to_str().unwrap(), "2");
    args.extend(["--replay-max-items", "6", "--replay-ratio", "0.5"]);
    let out = kioku(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let held = ReplayBuffer::open(&buffer, ReplayLimits::NONE).unwrap();
    let stats = held.stats();
    assert_eq!((stats.items, stats.seen), (6, 8), "{stats:?}");
    assert!(stats.by_source.get("adapt:newcomer").is_some_and(|&n| n > 0), "{stats:?}");
    with_adapter(&adapter);
}

#[test]
fn a_killed_adaptation_leaves_the_previous_adapter_and_buffer_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = dir.path().join("replay.kbuf");
    earlier_speaker_buffer(&buffer, &dir.path().join("earlier"), 2);
    let data = synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(4, 2));
    let (data, buffer_arg) = (data.to_str().unwrap(), buffer.to_str().unwrap());
    let adapter = dir.path().join("adapter");
    let out = kioku(&adapt_args(data, adapter.to_str().unwrap(), buffer_arg, "1"));
    assert!(out.status.success(), "{}", stderr(&out));
    let snapshot = |path: &Path| std::fs::read(path).unwrap();
    let (config, tensors, buffer_bytes) =
        (snapshot(&adapter.join(peft::CONFIG_FILE)), snapshot(&adapter.join(peft::TENSORS_FILE)), snapshot(&buffer));

    let mut child = Command::new(env!("CARGO_BIN_EXE_kioku"))
        .args(adapt_args(data, adapter.to_str().unwrap(), buffer_arg, "1000"))
        .current_dir(repo())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let started = stderr.lines().map_while(Result::ok).any(|line| line.starts_with("training"));
    assert!(started, "kioku adapt never started training");
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(snapshot(&adapter.join(peft::CONFIG_FILE)), config);
    assert_eq!(snapshot(&adapter.join(peft::TENSORS_FILE)), tensors);
    assert_eq!(snapshot(&buffer), buffer_bytes);
    assert_eq!(ReplayBuffer::open(&buffer, ReplayLimits::NONE).unwrap().len(), 4);
    with_adapter(&adapter);
}

#[test]
fn bad_data_directories_are_refused_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("adapter");
    let refused = |data: &Path, expected: &str| {
        let out =
            kioku(&["adapt", "--data", data.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--no-replay"]);
        assert!(!out.status.success());
        let message = stderr(&out);
        assert!(message.contains(expected) && !message.contains("panicked"), "{message}");
    };
    refused(&dir.path().join("missing"), "is not a directory");
    refused(dir.path(), "transcripts.tsv is missing");
    std::fs::write(dir.path().join("transcripts.tsv"), "").unwrap();
    refused(dir.path(), "lists no clips");
    std::fs::write(dir.path().join("transcripts.tsv"), "a\thello\n").unwrap();
    refused(dir.path(), "a.wav not found");
    std::fs::write(dir.path().join("a.wav"), "not audio").unwrap();
    refused(dir.path(), "is not a WAV file");
    assert!(!out_dir.exists());
    // Good recordings, a bad --llm-scale: refused in one line, and nothing is written.
    let data = synthesize_dir(&dir.path().join("speaker"), hard_voice(), &texts(6, 1));
    for scale in ["0", "-1", "nan", "inf"] {
        let flag = format!("--llm-scale={scale}");
        let args =
            ["adapt", "--data", data.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--no-replay", &flag];
        let out = kioku(&args);
        let message = stderr(&out);
        assert!(!out.status.success() && !message.contains("panicked"), "{scale}: {message}");
        // Progress notes may come first; the error itself is one line, the last.
        let last = message.trim().lines().last().unwrap_or_default();
        assert_eq!(last, "error: --llm-scale must be a positive number", "{scale}: {message}");
        assert_eq!(message.matches("error").count(), 1, "{scale}: {message}");
    }
    // Settings are checked first: a bad flag does not wait for recordings (here missing) to load.
    let missing = dir.path().join("missing");
    for (flag, error) in [("--lr=0", "--lr must be a positive number"), ("--epochs=0", "--epochs must be at least 1")] {
        let out = kioku(&["adapt", "--data", missing.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), flag]);
        assert_eq!(stderr(&out).trim(), format!("error: {error}"));
    }
    assert!(!out_dir.exists());
}
