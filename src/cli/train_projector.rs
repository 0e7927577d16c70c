use super::ModelArgs;
use anyhow::{ensure, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kioku::projector_training::features::PrepareProgress;
use kioku::projector_training::session::{train_projector, ProjectorProgress, ProjectorRun};
use kioku::projector_training::trainer::TrainConfig;
use std::path::PathBuf;

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

/// Two bars: one for the preparation's stages, one for the steps.
struct Bars {
    prepare: ProgressBar,
    train: ProgressBar,
    work: PathBuf,
}

impl PrepareProgress for Bars {
    fn start(&self, stage: &str, total: usize) {
        self.prepare.reset();
        self.prepare.set_length(total as u64);
        self.prepare.set_message(stage.to_string());
    }
    fn advance(&self) {
        self.prepare.inc(1);
    }
}

impl ProjectorProgress for Bars {
    fn training(&self, done: usize, total: usize) {
        self.prepare.finish_and_clear();
        if done > 0 {
            eprintln!("resuming from {} at step {done}", self.work.join("checkpoint.safetensors").display());
        }
        self.train.set_length(total as u64);
        self.train.set_position(done as u64);
        self.train.reset_eta();
    }
    fn step(&self, step: usize, loss_ema: f32, lr: f64) {
        self.train.set_message(format!("loss {loss_ema:.3} lr {lr:.1e}"));
        self.train.set_position(step as u64);
    }
    fn checkpoint(&self, step: usize, train_loss_ema: f32, dev_loss: f32) {
        // `println` on a bar drops the line when stderr is not a terminal (a log file).
        self.train.suspend(|| eprintln!("step {step}: train loss {train_loss_ema:.3}, dev loss {dev_loss:.3}"));
    }
}

pub fn run(args: &TrainProjectorArgs) -> Result<()> {
    ensure!(args.steps > 0 && args.batch_size > 0, "--steps and --batch-size must be positive");
    ensure!((0.0..=1.0).contains(&args.repeat_fraction), "--repeat-fraction must be between 0 and 1");
    ensure!(args.checkpoint_every > 0, "--checkpoint-every must be at least 1");
    let work = args.work.clone().unwrap_or_else(|| args.corpus.join("projector-training"));
    let device = kioku::device::parse_device(&args.model.source.device)?;
    let run = ProjectorRun {
        model: args.model.source.model.clone(),
        adapters: args.model.adapters.clone(),
        corpus: args.corpus.clone(),
        out: args.out.clone(),
        work: work.clone(),
        config: TrainConfig {
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
        },
        train_items: args.train_items,
        dev_items: args.dev_items,
        max_answer_tokens: args.max_answer_tokens,
        checkpoint_every: args.checkpoint_every,
    };
    let bars = Bars {
        prepare: ProgressBar::new(0)
            .with_style(ProgressStyle::with_template("{msg:28} {bar:30} {pos}/{len}  ETA {eta}")?),
        train: ProgressBar::new(0)
            .with_style(ProgressStyle::with_template("step {pos}/{len} {bar:30} {msg}  {elapsed} elapsed, ETA {eta}")?),
        work,
    };
    let report = train_projector(&run, &device, &bars)?;
    bars.train.finish_and_clear();
    eprintln!(
        "wrote {} after {} steps in {:.1} min of training",
        args.out.display(),
        report.steps,
        report.training_seconds / 60.0
    );
    Ok(())
}
