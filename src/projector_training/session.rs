//! A whole projector training run, as `kioku train-projector` drives it: pick
//! the corpus clips, prepare (or reuse) their features, train with a
//! checkpoint every few steps, resume a killed run from its checkpoint, and
//! write the projector.

use super::features::{prepare, PrepareProgress};
use super::trainer::{ProjectorTrainer, TrainConfig};
use crate::assistant::Assistant;
use crate::corpus::{read_manifest, ManifestEntry, Split};
use crate::model::peft::AdapterSpec;
use crate::training::Checkpoint;
use anyhow::{ensure, Context, Result};
use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// One training run.
pub struct ProjectorRun {
    pub model: PathBuf,
    /// Adapters on the model that prepares the features and teacher answers.
    pub adapters: Vec<AdapterSpec>,
    /// A corpus made by `kioku corpus`.
    pub corpus: PathBuf,
    /// Where the trained projector goes.
    pub out: PathBuf,
    /// Cached features, the checkpoint and the log; a killed run resumes from here.
    pub work: PathBuf,
    pub config: TrainConfig,
    /// Training clips used (a seeded random subset; None: all).
    pub train_items: Option<usize>,
    /// Dev clips whose loss is reported at each checkpoint.
    pub dev_items: usize,
    /// Longest text-mode answer generated as a target, in tokens.
    pub max_answer_tokens: usize,
    pub checkpoint_every: usize,
}

/// What a run reports as it goes, beside the preparation's stages.
pub trait ProjectorProgress: PrepareProgress {
    /// Training starts (or resumes) at step `done` of `total`.
    fn training(&self, done: usize, total: usize);
    /// A step ended with this smoothed loss, at this learning rate.
    fn step(&self, step: usize, loss_ema: f32, lr: f64);
    /// A checkpoint was written, with the dev loss at it.
    fn checkpoint(&self, step: usize, train_loss_ema: f32, dev_loss: f32);
}

pub struct ProjectorReport {
    pub steps: usize,
    /// Training seconds over every run that led here, resumed ones included.
    pub training_seconds: f64,
}

/// A seeded random subset of one split.
fn subset(entries: &[ManifestEntry], split: Split, n: Option<usize>, seed: u64) -> Vec<ManifestEntry> {
    let mut chosen: Vec<ManifestEntry> = entries.iter().filter(|e| e.split == split).cloned().collect();
    chosen.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    chosen.truncate(n.unwrap_or(usize::MAX));
    chosen
}

pub fn train_projector(
    run: &ProjectorRun,
    device: &Device,
    progress: &dyn ProjectorProgress,
) -> Result<ProjectorReport> {
    let manifest = read_manifest(&run.corpus)?;
    let seed = run.config.seed;
    let train_entries = subset(&manifest, Split::Train, run.train_items, seed);
    let dev_entries = subset(&manifest, Split::Dev, Some(run.dev_items), seed);
    ensure!(!train_entries.is_empty(), "the corpus {} has no training clips", run.corpus.display());

    let assistant = Assistant::load_with_adapters(&run.model, device, &run.adapters)?;
    let (corpus, work, tokens) = (&run.corpus, &run.work, run.max_answer_tokens);
    let train = prepare(&assistant, corpus, &train_entries, Split::Train, work, tokens, progress)?;
    let dev = prepare(&assistant, corpus, &dev_entries, Split::Dev, work, tokens, progress)?;
    let mut trainer = ProjectorTrainer::new(&run.model, &assistant, run.config.clone(), device)?;
    // The inference model prepared the features; training needs only its own LLM.
    drop(assistant);

    let checkpoint_path = work.join("checkpoint.safetensors");
    let mut previous_seconds = 0.0;
    let mut history: Vec<serde_json::Value> = Vec::new();
    if checkpoint_path.exists() {
        let checkpoint = Checkpoint::load(&checkpoint_path)?;
        trainer.resume(&checkpoint).with_context(|| format!("cannot resume from {}", checkpoint_path.display()))?;
        previous_seconds = checkpoint.get("elapsed_s")?;
        history = checkpoint.get("history")?;
    }
    let total = trainer.config().steps;
    progress.training(trainer.steps_taken(), total);
    let started = Instant::now();
    // Training seconds over all runs, as of the last checkpoint.
    let mut elapsed = previous_seconds;
    let mut smoothed: Option<f32> = None;
    let log_path = work.join("log.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    while trainer.steps_taken() < total {
        let lr = trainer.learning_rate();
        let step_started = Instant::now();
        let loss = trainer.step(&train)?;
        let ema = smoothed.map_or(loss, |s| 0.95 * s + 0.05 * loss);
        smoothed = Some(ema);
        let step = trainer.steps_taken();
        progress.step(step, ema, lr);
        writeln!(
            log,
            "{}",
            json!({"step": step, "loss": loss, "lr": lr, "seconds": step_started.elapsed().as_secs_f64()})
        )?;
        if step.is_multiple_of(run.checkpoint_every) || step == total {
            let dev_loss = if dev.is_empty() { f32::NAN } else { trainer.evaluate(&dev)? };
            history.push(json!({"step": step, "train_loss_ema": ema, "dev_loss": dev_loss}));
            let mut checkpoint = trainer.checkpoint()?;
            elapsed = previous_seconds + started.elapsed().as_secs_f64();
            checkpoint.set("elapsed_s", &elapsed)?;
            checkpoint.set("history", &history)?;
            checkpoint.save(&checkpoint_path)?;
            progress.checkpoint(step, ema, dev_loss);
        }
    }

    let trained = if trainer.config().speech_lora_rank > 0 {
        "the projector and the LLM's speech adapter"
    } else {
        "the projector"
    };
    let record = json!({
        "objective": format!("teacher-forced cross-entropy on the model's own text-mode answers (sequence-level distillation) and on verbatim transcripts after a repeat instruction; trains {trained}"),
        "config": trainer.config(),
        "train_clips": train.len(),
        "dev_clips": dev.len(),
        "wall_time_s": elapsed,
        "history": history,
    });
    trainer.save_projector(&run.out, &record)?;
    Ok(ProjectorReport { steps: trainer.steps_taken(), training_seconds: elapsed })
}
