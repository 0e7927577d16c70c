use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kioku::adapt::replay::ReplayLimits;
use kioku::adapt::session::{adapt, default_replay_path, AdaptEvent, AdaptRequest, ReplaySource};
use kioku::adapt::trainer::{AdaptConfig, SpokenTarget};
use kioku::model::lora::LoraConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the adaptation trains; shared by `kioku adapt` and `kioku enroll`.
#[derive(Args, Debug)]
pub struct TrainingArgs {
    /// Model file (kioku merged safetensors).
    #[arg(long, env = "KIOKU_MODEL", default_value_os_t = kioku::home::default_model())]
    pub model: PathBuf,
    /// Where to run: auto picks CUDA or Metal when built in and present, else CPU.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// LoRA targets: presets (encoder-attn, decoder, llm-attn, llm-all) or
    /// regular expressions over module names. Repeat or separate with commas.
    #[arg(long, value_delimiter = ',', default_values_t = AdaptConfig::default().targets)]
    pub targets: Vec<String>,
    #[arg(long, default_value_t = AdaptConfig::default().lora.rank)]
    pub rank: usize,
    #[arg(long, default_value_t = AdaptConfig::default().lora.alpha)]
    pub alpha: f64,
    /// Dropout on the adapters' input while training.
    #[arg(long, default_value_t = AdaptConfig::default().lora.dropout)]
    pub dropout: f32,
    /// Optimizer steps.
    #[arg(long, default_value_t = AdaptConfig::default().steps, conflicts_with = "epochs")]
    pub steps: usize,
    /// Passes over the recordings instead of a step count.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate (short warmup, then cosine decay to a tenth).
    #[arg(long, default_value_t = AdaptConfig::default().peak_lr)]
    pub lr: f64,
    /// Examples per step, new and replayed together.
    #[arg(long, default_value_t = AdaptConfig::default().batch_size)]
    pub batch_size: usize,
    /// Replay buffer (default: replay.kbuf beside the model). Grows by the new speaker's items on success.
    #[arg(long)]
    pub replay_buffer: Option<PathBuf>,
    /// Corpus directory (`kioku corpus`) whose train split seeds the buffer when it does not exist yet.
    #[arg(long)]
    pub seed_corpus: Option<PathBuf>,
    /// Most items the replay buffer keeps.
    #[arg(long, default_value_t = ReplayLimits::default().max_items)]
    pub replay_max_items: usize,
    /// Most megabytes (10^6 bytes) the replay buffer keeps.
    #[arg(long, default_value_t = ReplayLimits::default().max_bytes / 1_000_000)]
    pub replay_max_mb: u64,
    /// Share of each batch replayed from the buffer.
    #[arg(long, default_value_t = AdaptConfig::default().replay_ratio)]
    pub replay_ratio: f64,
    /// Train on the new speaker alone and leave the buffer untouched.
    #[arg(long, conflicts_with_all = ["replay_buffer", "seed_corpus"])]
    pub no_replay: bool,
    /// λ of an L2 pull λ·Σ‖θ−θ_start‖² on the adapter tensors.
    #[arg(long, default_value_t = AdaptConfig::default().l2)]
    pub l2: f64,
    /// Stop training after this many seconds (from the start), still saving the adapter.
    #[arg(long, value_name = "SECONDS")]
    pub time_budget: Option<f64>,
    /// Seed for the adapters' initialisation, dropout, data order and replay draws.
    #[arg(long, default_value_t = AdaptConfig::default().seed)]
    pub seed: u64,
    /// The new speaker's name in the replay buffer (default: the data directory's name).
    #[arg(long)]
    pub speaker: Option<String>,
    /// With LLM targets: whether the LLM's adapters act on every turn, or on
    /// spoken questions answered end-to-end only, as the speech adapter does
    /// (typed questions then keep the unchanged LLM; the default, since the
    /// study's ungated arms lost half their typed answers).
    #[arg(long, value_enum, default_value_t = LlmTurns::Audio)]
    pub llm_turns: LlmTurns,
    /// With LLM targets: what the LLM learns to say after each of the speaker's
    /// clips: the transcript (after "Repeat exactly what I said."), or the base
    /// model's answer to the transcript typed (as spoken questions are asked).
    #[arg(long, value_enum, default_value_t = SpokenReply::Answer)]
    pub spoken_target: SpokenReply,
    /// With LLM targets: the strength the LLM's adapters are saved at, as a
    /// share of what they learnt (1 keeps them whole). No scale measured
    /// lifted spoken answers in a new voice; a quarter keeps the LLM nearer
    /// the base model.
    #[arg(long, default_value_t = AdaptConfig::default().llm_scale)]
    pub llm_scale: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SpokenReply {
    Transcript,
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LlmTurns {
    All,
    Audio,
}

#[derive(Args)]
pub struct AdaptArgs {
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Directory of WAV files and transcripts.tsv (`id<TAB>text`, id = file name without .wav).
    #[arg(long)]
    pub data: PathBuf,
    /// Adapter directory to write (PEFT layout), for `--adapter` on transcribe / ask / listen.
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(args: &AdaptArgs) -> Result<()> {
    run_adaptation(&args.training, &args.data, &args.out)
}

/// Adapts to the recordings in `data`, with a progress bar, and writes `out`.
pub fn run_adaptation(args: &TrainingArgs, data: &Path, out: &Path) -> Result<()> {
    if let Some(seconds) = args.time_budget {
        anyhow::ensure!(seconds.is_finite() && seconds > 0.0, "--time-budget must be a positive number of seconds");
    }
    let config = AdaptConfig {
        targets: args.targets.clone(),
        lora: LoraConfig { rank: args.rank, alpha: args.alpha, dropout: args.dropout },
        steps: args.steps,
        batch_size: args.batch_size,
        peak_lr: args.lr,
        replay_ratio: if args.no_replay { 0.0 } else { args.replay_ratio },
        l2: args.l2,
        seed: args.seed,
        llm_on_audio_turns_only: args.llm_turns == LlmTurns::Audio,
        spoken_target: match args.spoken_target {
            SpokenReply::Transcript => SpokenTarget::Transcript,
            SpokenReply::Answer => SpokenTarget::TypedAnswer,
        },
        llm_scale: args.llm_scale,
        ..AdaptConfig::default()
    };
    let replay = if args.no_replay {
        ReplaySource::Off
    } else {
        let path = args.replay_buffer.clone().unwrap_or_else(|| default_replay_path(&args.model));
        let limits =
            ReplayLimits { max_items: args.replay_max_items, max_bytes: args.replay_max_mb.saturating_mul(1_000_000) };
        ReplaySource::Buffer { path, seed_corpus: args.seed_corpus.clone(), limits }
    };
    let request = AdaptRequest {
        model: args.model.clone(),
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        config,
        epochs: args.epochs,
        replay,
        time_budget: args.time_budget.map(Duration::from_secs_f64),
        speaker: args.speaker.clone(),
    };
    let device = kioku::device::parse_device(&args.device)?;
    let mut progress = AdaptProgress::default();
    let report = adapt(&request, &device, &mut |event| progress.show(event))?;
    eprintln!(
        "wrote {} after {}/{} steps in {:.0} s (loss {:.3} -> {:.3}){}",
        out.display(),
        report.steps,
        report.planned_steps,
        report.seconds,
        report.first_loss,
        report.last_loss,
        report.buffer_items.map_or(String::new(), |n| format!("; the replay buffer holds {n} items"))
    );
    Ok(())
}

/// Shows an adaptation as it happens: notes as lines, training as a progress
/// bar with loss and ETA; also used by `kioku eval --study`.
pub struct AdaptProgress {
    bar: ProgressBar,
}

impl Default for AdaptProgress {
    fn default() -> Self {
        Self { bar: ProgressBar::hidden() }
    }
}

impl AdaptProgress {
    pub fn show(&mut self, event: AdaptEvent) {
        match event {
            // `println` on a bar drops the line when stderr is not a terminal.
            AdaptEvent::Note(text) => self.bar.suspend(|| eprintln!("{text}")),
            AdaptEvent::TrainingStarts { steps } => {
                // A plain line too: scripts (and the kill test) wait for it.
                eprintln!("training {steps} steps");
                self.bar = ProgressBar::new(steps as u64).with_style(
                    ProgressStyle::with_template("step {pos}/{len} {bar:30} {msg}  {elapsed} elapsed, ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            AdaptEvent::Step { step, outcome } => {
                self.bar.set_position(step as u64);
                self.bar.set_message(format!("loss {:.3}", outcome.loss));
            }
            AdaptEvent::Saving => self.bar.finish_and_clear(),
        }
    }
}
