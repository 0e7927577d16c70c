//! Projector training and the end-to-end path, on the real model and real audio.

mod common;

use candle_core::Device;
use common::*;
use kioku::assistant::{Assistant, Mode};
use kioku::corpus::{Kind, ManifestEntry, Split};
use kioku::eval::pocketsphinx;
use kioku::eval::projector::{evaluate, Question, SpokenClip};
use kioku::generation::SamplingOptions;
use kioku::projector_training::features::AlignItem;
use kioku::projector_training::features::{prepare, PrepareProgress};
use kioku::projector_training::trainer::{ProjectorTrainer, Task, TrainConfig};

struct Quiet;

impl PrepareProgress for Quiet {
    fn start(&self, _: &str, _: usize) {}
    fn advance(&self) {}
}

/// Manifest entries for recorded clips (absolute paths, so any corpus dir works).
fn entries() -> Vec<ManifestEntry> {
    let mut clips = vec![(example_wav(), "What is the capital of France?".to_string())];
    clips.extend(pocketsphinx::real_speech().unwrap().into_iter().skip(5).take(3).map(|c| (c.path, c.text)));
    clips
        .into_iter()
        .enumerate()
        .map(|(i, (path, text))| ManifestEntry {
            id: format!("clip-{i}"),
            split: Split::Train,
            path: path.display().to_string(),
            text,
            kind: Kind::Question,
            reference_answer: None,
            voice: "recorded".into(),
            augmentation: "clean".into(),
            duration_s: 0.0,
        })
        .collect()
}

#[test]
fn short_training_lowers_the_loss_and_resumes_exactly() {
    let assistant = assistant();
    let cache = tempfile::tempdir().unwrap();
    let items =
        prepare(&assistant, std::path::Path::new("/"), &entries(), Split::Train, cache.path(), 12, &Quiet).unwrap();
    assert!(items.iter().all(|i| !i.text_answer.answer.is_empty()));
    // A second prepare reuses the cache (same answers, nothing recomputed).
    let again =
        prepare(&assistant, std::path::Path::new("/"), &entries(), Split::Train, cache.path(), 12, &Quiet).unwrap();
    assert_eq!(again[0].text_answer.answer, items[0].text_answer.answer);

    let config = TrainConfig {
        steps: 6,
        batch_size: 4,
        peak_lr: 3e-3,
        warmup_steps: 2,
        hidden_dim: 256,
        ..TrainConfig::default()
    };
    let mut trainer = ProjectorTrainer::new(&model_path(), &assistant, config.clone(), &Device::Cpu).unwrap();
    let before = trainer.evaluate(&items).unwrap();
    for _ in 0..3 {
        trainer.step(&items).unwrap();
    }
    let checkpoint = trainer.checkpoint().unwrap();
    for _ in 3..6 {
        trainer.step(&items).unwrap();
    }
    let after = trainer.evaluate(&items).unwrap();
    eprintln!("loss on the training clips: {before:.3} -> {after:.3}");
    assert!(after < 0.8 * before, "training did not lower the loss: {before:.3} -> {after:.3}");

    // Resuming from the step-3 checkpoint reproduces the uninterrupted run.
    let mut resumed = ProjectorTrainer::new(&model_path(), &assistant, config, &Device::Cpu).unwrap();
    let path = cache.path().join("checkpoint.safetensors");
    checkpoint.save(&path).unwrap();
    resumed.resume(&kioku::training::Checkpoint::load(&path).unwrap()).unwrap();
    for _ in 3..6 {
        resumed.step(&items).unwrap();
    }
    let resumed_loss = resumed.evaluate(&items).unwrap();
    assert!((resumed_loss - after).abs() < 1e-4, "resumed run diverged: {resumed_loss} vs {after}");
}

/// The speech adapter trains with the projector (every tensor of both gets a
/// gradient), packs into a model with it, and leaves typed questions to the base LLM.
#[test]
fn speech_adapter_trains_packs_and_leaves_typed_answers_alone() {
    let assistant = assistant();
    let dir = tempfile::tempdir().unwrap();
    let items =
        prepare(&assistant, std::path::Path::new("/"), &entries(), Split::Train, dir.path(), 12, &Quiet).unwrap();
    let config = TrainConfig {
        steps: 2,
        batch_size: 4,
        peak_lr: 1e-2,
        warmup_steps: 0,
        hidden_dim: 256,
        speech_lora_rank: 2,
        ..TrainConfig::default()
    };
    let mut trainer = ProjectorTrainer::new(&model_path(), &assistant, config, &Device::Cpu).unwrap();
    let llm_modules = 30 * 7;
    assert_eq!(
        trainer.trainable().len(),
        4 + 2 * llm_modules,
        "the projector's 4 tensors and A, B on every LLM projection"
    );
    // B starts at zero, which makes A's first gradient zero by construction: step once first.
    trainer.step(&items).unwrap();
    let batch: Vec<(&AlignItem, Task)> = items.iter().map(|i| (i, Task::Repeat)).collect();
    let grads = trainer.loss(&batch).unwrap().backward().unwrap();
    let is_zero = |g: &candle_core::Tensor| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0;
    let missing: Vec<&String> = trainer
        .trainable()
        .iter()
        .filter(|(_, v)| grads.get(v.as_tensor()).is_none_or(is_zero))
        .map(|(name, _)| name)
        .collect();
    assert!(missing.is_empty(), "no gradient for {missing:?}");

    let projector = dir.path().join("projector.safetensors");
    trainer.save_projector(&projector, &serde_json::json!({})).unwrap();
    // A further stage starts from the saved adapter, not from zero.
    let next = TrainConfig { init: Some(projector.clone()), ..trainer.config().clone() };
    let next = ProjectorTrainer::new(&model_path(), &assistant, next, &Device::Cpu).unwrap();
    let b = |t: &ProjectorTrainer| {
        let (_, var) =
            t.trainable().iter().find(|(name, _)| name.ends_with("layers.0.self_attn.q_proj.lora_B")).unwrap();
        var.as_tensor()
            .to_dtype(candle_core::DType::F16)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(b(&next), b(&trainer));
    assert!(b(&next).iter().any(|v| *v != 0.0));

    let packed = dir.path().join("model.safetensors");
    let out = kioku(&[
        "pack",
        "--whisper",
        whisper_source().to_str().unwrap(),
        "--llm",
        gguf_source().to_str().unwrap(),
        "--projector",
        projector.to_str().unwrap(),
        "-o",
        packed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let with_adapter = Assistant::load(&packed, &Device::Cpu).unwrap();
    assert_eq!(with_adapter.header().speech_lora.map(|c| c.rank), Some(2));
    let sampling = SamplingOptions { max_tokens: 12, ..Default::default() };
    let typed = |a: &Assistant| a.ask_text("What is the capital of France?", &sampling, &mut |_| {}).unwrap().answer;
    assert_eq!(typed(&with_adapter), typed(&assistant));
    let samples = kioku::assistant::load_audio_16k(&example_wav()).unwrap();
    let spoken = with_adapter.ask_audio(&samples, Mode::E2e, &sampling, &mut |_| {}).unwrap();
    assert!(!spoken.answer.is_empty());
}

/// The default model (`make model` packs the shipped projector and its
/// speech adapter) answers the spoken example end-to-end, without Whisper's decoder.
#[test]
fn e2e_answers_the_example_question() {
    let out = kioku(&["ask", "--mode", "e2e", "--json", "--max-tokens", "24", example_wav().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(answer["transcript"].is_null(), "e2e must not transcribe: {answer}");
    assert!(answer["answer"].as_str().unwrap().contains("Paris"), "{answer}");
}

#[test]
fn eval_align_reports_every_mode() {
    let assistant = assistant();
    let mut clips: Vec<SpokenClip> = pocketsphinx::real_speech()
        .unwrap()
        .into_iter()
        .take(2)
        .map(|c| SpokenClip { path: c.path, text: c.text, question: None })
        .collect();
    clips.push(SpokenClip {
        path: example_wav(),
        text: "What is the capital of France?".into(),
        question: Some(Question { reference_answer: Some("Paris".into()) }),
    });
    let report = evaluate(&assistant, "smoke", &clips, 16, &|| ()).unwrap();
    assert_eq!((report.clips, report.questions, report.with_reference), (3, 1, 1));
    let modes: Vec<&str> = report.modes.iter().map(|m| m.mode).collect();
    assert_eq!(modes, ["text", "cascade", "e2e"]);
    let cascade = &report.modes[1];
    assert!(cascade.repeat_wer.unwrap() < 0.3, "Whisper's WER on clean clips: {:?}", cascade.repeat_wer);
    assert_eq!(cascade.gold_accuracy, Some(1.0), "cascade answers Paris: {:?}", report.items[2].answers);
    assert!(report.markdown().contains("| e2e |"));
}
