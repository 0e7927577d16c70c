//! Argument parsing and dispatch; one file per command. Each file parses its
//! flags, calls the library and prints; the work itself lives in the library
//! (docs/ARCHITECTURE.md, "A new command").

mod adapt;
mod ask;
mod corpus;
mod devices;
mod enroll;
mod eval;
mod eval_align;
mod export_adapter;
mod info;
mod listen;
mod merge;
mod pack;
mod replay;
mod serve;
mod speak;
mod train_projector;
mod transcribe;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use kioku::model::peft::AdapterSpec;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kioku", version, about = "A private voice assistant that runs on your own machine.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model file's components, sizes and provenance.
    Info(info::InfoArgs),
    /// Transcribe WAV files with the model's Whisper.
    Transcribe(transcribe::TranscribeArgs),
    /// Answer a spoken (WAV) or typed question.
    Ask(ask::AskArgs),
    /// Build one merged model file from Whisper and LLM checkpoints.
    Pack(pack::PackArgs),
    /// Listen (microphone or WAV file) and answer every question heard.
    Listen(listen::ListenArgs),
    /// List audio input devices and their default formats.
    Devices,
    /// Synthesize the spoken corpus (espeak-ng + sox): train / dev / test WAVs and a manifest.
    Corpus(corpus::CorpusArgs),
    /// Measure end-to-end speech understanding: repeat WER, agreement with text mode, gold answers.
    EvalAlign(eval_align::EvalAlignArgs),
    /// Train the speech-to-LLM projector on a corpus (encoder and LLM frozen).
    TrainProjector(train_projector::TrainProjectorArgs),
    /// Inspect or fill an experience-replay buffer (past items mixed into adaptation).
    Replay(replay::ReplayArgs),
    /// The forgetting report: WER on a new speaker, earlier speakers and real speech, and text QA, for the base model and each arm.
    Eval(eval::EvalArgs),
    /// Bake adapters into a new model file, or merge fine-tunes of one base (linear, TIES, DARE).
    Merge(merge::MergeArgs),
    /// Teach the model a new speaker: LoRA adapters from WAVs + transcripts, with replay against forgetting.
    Adapt(adapt::AdaptArgs),
    /// Read prompt sentences aloud (microphone or --input-dir), then adapt to your voice.
    Enroll(enroll::EnrollArgs),
    /// Serve the assistant over a local OpenAI-compatible HTTP API (chat with audio, transcription).
    Serve(serve::ServeArgs),
    /// Write an adapter's LLM part in another format: a GGUF LoRA for llama.cpp.
    ExportAdapter(export_adapter::ExportAdapterArgs),
}

/// The model file and where to run it.
#[derive(Args, Debug)]
pub struct ModelSource {
    /// Model file (kioku merged safetensors). By default models/ in this
    /// directory, else the one `make install` put in the data directory.
    #[arg(long, env = "KIOKU_MODEL", default_value_os_t = kioku::home::default_model())]
    pub model: PathBuf,
    /// Where to run: auto picks CUDA or Metal when built in and present, else CPU.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl ModelSource {
    pub fn load(&self, adapters: &[AdapterSpec]) -> Result<kioku::assistant::Assistant> {
        let device = kioku::device::parse_device(&self.device)?;
        Ok(kioku::assistant::Assistant::load_with_adapters(&self.model, &device, adapters)?)
    }
}

/// Options shared by every command that runs a model.
#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// LoRA adapter directory (PEFT layout) to apply, optionally at a scale
    /// (default 1; below 1 keeps more of the base model). Repeat to stack adapters.
    #[arg(long = "adapter", value_name = "DIR[:SCALE]")]
    pub adapters: Vec<AdapterSpec>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<kioku::assistant::Assistant> {
        self.source.load(&self.adapters)
    }
}

pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Info(args) => info::run(&args),
        Command::Transcribe(args) => transcribe::run(&args),
        Command::Ask(args) => ask::run(&args),
        Command::Pack(args) => pack::run(&args),
        Command::Listen(args) => listen::run(&args),
        Command::Devices => devices::run(),
        Command::Corpus(args) => corpus::run(&args),
        Command::EvalAlign(args) => eval_align::run(&args),
        Command::TrainProjector(args) => train_projector::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Adapt(args) => adapt::run(&args),
        Command::Enroll(args) => enroll::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::ExportAdapter(args) => export_adapter::run(&args),
    }
}

/// A library enum as a flag's value, by the names `name` gives `all` of it: the library stays free
/// of clap, and `--help` still lists the choices.
pub(crate) fn one_of<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(all.iter().map(|&value| name(value))).map(move |chosen| {
        *all.iter().find(|&&value| name(value) == chosen).expect("clap admits only the names listed")
    })
}
