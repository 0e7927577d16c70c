use super::ModelArgs;
use anyhow::{ensure, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kioku::corpus::{read_manifest, ManifestEntry, Split};
use kioku::projector_training::features::{prepare, AlignItem, PrepareProgress};
use kioku::projector_training::trainer::{ProjectorTrainer, TrainConfig};
use kioku::training::Checkpoint;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct TrainProjectorArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Corpus made by `kioku corpus` (manifest.jsonl and the clips).
    #[arg(long)]
    corpus: PathBuf,
    /// Where the trained projector goes (f16 safetensors, for `kioku pack --projector`).
    #[arg(long, short, default_value = "models/projector-tiny-en.safetensors")]
    out: PathBuf,
    /// Cached encoder outputs and text answers, the checkpoint and the log
    /// (default: CORPUS/projector-training). A killed run resumes from here.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate (linear warmup, then cosine decay to a tenth).
    #[arg(long, default_value_t = TrainConfig::default().peak_lr)]
    lr: f64,
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    warmup_steps: usize,
    /// Seed for initialisation, data order and task choice.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Width of the projector's hidden layer.
    #[arg(long, default_value_t = TrainConfig::default().hidden_dim)]
    hidden_dim: usize,
    /// Share of examples that learn "repeat what I said" rather than answering.
    #[arg(long, default_value_t = TrainConfig::default().repeat_fraction)]
    repeat_fraction: f64,
    /// Use this many training clips (a seeded random subset; default: all).
    #[arg(long)]
    train_items: Option<usize>,
    /// Dev clips whose loss is reported at each checkpoint.
    #[arg(long, default_value_t = 16)]
    dev_items: usize,
    /// Longest text-mode answer generated as a target, in tokens (targets are cut at 20).
    #[arg(long, default_value_t = 20)]
    max_answer_tokens: usize,
    /// Continue from a trained projector (e.g. the shipped one) as a new stage
    /// with its own schedule, instead of a random initialisation.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Also train a LoRA adapter of this rank on every LLM projection, used
    /// on audio turns only (a speech adapter; 0 keeps the LLM frozen).
    #[arg(long, default_value_t = TrainConfig::default().speech_lora_rank)]
    speech_lora_rank: usize,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 25)]
    checkpoint_every: usize,
}

struct Bar(ProgressBar);

impl PrepareProgress for Bar {
    fn start(&self, stage: &str, total: usize) {
        self.0.reset();
        self.0.set_length(total as u64);
        self.0.set_message(stage.to_string());
    }
    fn advance(&self) {
        self.0.inc(1);
    }
}

/// A seeded random subset of one split.
fn subset(entries: &[ManifestEntry], split: Split, n: Option<usize>, seed: u64) -> Vec<ManifestEntry> {
    let mut chosen: Vec<ManifestEntry> = entries.iter().filter(|e| e.split == split).cloned().collect();
    chosen.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    chosen.truncate(n.unwrap_or(usize::MAX));
    chosen
}

pub fn run(args: &TrainProjectorArgs) -> Result<()> {
    ensure!(args.steps > 0 && args.batch_size > 0, "--steps and --batch-size must be positive");
    ensure!((0.0..=1.0).contains(&args.repeat_fraction), "--repeat-fraction must be between 0 and 1");
    let work = args.work.clone().unwrap_or_else(|| args.corpus.join("projector-training"));
    let manifest = read_manifest(&args.corpus)?;
    let train_entries = subset(&manifest, Split::Train, args.train_items, args.seed);
    let dev_entries = subset(&manifest, Split::Dev, Some(args.dev_items), args.seed);
    ensure!(!train_entries.is_empty(), "the corpus {} has no training clips", args.corpus.display());

    let assistant = args.model.load()?;
    let device = kioku::device::parse_device(&args.model.source.device)?;
    let bar =
        Bar(ProgressBar::new(0).with_style(ProgressStyle::with_template("{msg:28} {bar:30} {pos}/{len}  ETA {eta}")?));
    let train = prepare(&assistant, &args.corpus, &train_entries, Split::Train, &work, args.max_answer_tokens, &bar)?;
    let dev = prepare(&assistant, &args.corpus, &dev_entries, Split::Dev, &work, args.max_answer_tokens, &bar)?;
    bar.0.finish_and_clear();

    let config = TrainConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        peak_lr: args.lr,
        warmup_steps: args.warmup_steps,
        seed: args.seed,
        hidden_dim: args.hidden_dim,
        repeat_fraction: args.repeat_fraction,
        init: args.init.clone(),
        speech_lora_rank: args.speech_lora_rank,
        ..TrainConfig::default()
    };
    let mut trainer = ProjectorTrainer::new(&args.model.source.model, &assistant, config, &device)?;
    drop(assistant);
    let checkpoint_path = work.join("checkpoint.safetensors");
    let mut previous_seconds = 0.0;
    let mut history: Vec<serde_json::Value> = Vec::new();
    if checkpoint_path.exists() {
        let checkpoint = Checkpoint::load(&checkpoint_path)?;
        trainer.resume(&checkpoint).with_context(|| format!("cannot resume from {}", checkpoint_path.display()))?;
        previous_seconds = checkpoint.get("elapsed_s")?;
        history = checkpoint.get("history")?;
        eprintln!("resuming from {} at step {}", checkpoint_path.display(), trainer.steps_taken());
    }
    let elapsed = train_loop(
        &mut trainer,
        &train,
        &dev,
        &checkpoint_path,
        previous_seconds,
        &mut history,
        args.checkpoint_every,
    )?;

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
    trainer.save_projector(&args.out, &record)?;
    eprintln!(
        "wrote {} after {} steps in {:.1} min of training",
        args.out.display(),
        trainer.steps_taken(),
        elapsed / 60.0
    );
    Ok(())
}

fn train_loop(
    trainer: &mut ProjectorTrainer,
    train: &[AlignItem],
    dev: &[AlignItem],
    checkpoint_path: &std::path::Path,
    previous_seconds: f64,
    history: &mut Vec<serde_json::Value>,
    checkpoint_every: usize,
) -> Result<f64> {
    let total = trainer.config().steps;
    let bar = ProgressBar::new(total as u64)
        .with_style(ProgressStyle::with_template("step {pos}/{len} {bar:30} {msg}  {elapsed} elapsed, ETA {eta}")?);
    bar.set_position(trainer.steps_taken() as u64);
    bar.reset_eta();
    let started = Instant::now();
    // Training seconds over all runs, as of the last checkpoint.
    let mut elapsed = previous_seconds;
    let mut smoothed: Option<f32> = None;
    let log_path = checkpoint_path.with_file_name("log.jsonl");
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    while trainer.steps_taken() < total {
        let lr = trainer.learning_rate();
        let step_started = Instant::now();
        let loss = trainer.step(train)?;
        let ema = smoothed.map_or(loss, |s| 0.95 * s + 0.05 * loss);
        smoothed = Some(ema);
        bar.set_message(format!("loss {ema:.3} lr {lr:.1e}"));
        bar.inc(1);
        let step = trainer.steps_taken();
        writeln!(
            log,
            "{}",
            json!({"step": step, "loss": loss, "lr": lr, "seconds": step_started.elapsed().as_secs_f64()})
        )?;
        if step.is_multiple_of(checkpoint_every) || step == total {
            let dev_loss = if dev.is_empty() { f32::NAN } else { trainer.evaluate(dev)? };
            history.push(json!({"step": step, "train_loss_ema": ema, "dev_loss": dev_loss}));
            // `println` on a bar drops the line when stderr is not a terminal (a log file).
            bar.suspend(|| eprintln!("step {step}: train loss {ema:.3}, dev loss {dev_loss:.3}"));
            let mut checkpoint = trainer.checkpoint()?;
            elapsed = previous_seconds + started.elapsed().as_secs_f64();
            checkpoint.set("elapsed_s", &elapsed)?;
            checkpoint.set("history", history)?;
            checkpoint.save(checkpoint_path)?;
        }
    }
    bar.finish_and_clear();
    Ok(elapsed)
}
