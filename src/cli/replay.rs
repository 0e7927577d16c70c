use anyhow::Result;
use clap::{Args, Subcommand};
use kioku::adapt::replay::{ReplayBuffer, ReplayLimits};
use kioku::corpus::Split;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    command: ReplayCommand,
}

#[derive(Subcommand)]
enum ReplayCommand {
    /// Show what a replay buffer holds: items by kind, speaker and source, size, offers seen.
    Info {
        /// Replay buffer file.
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Offer a corpus split's clips to a replay buffer (created if missing) and save it.
    Seed {
        /// Replay buffer file.
        path: PathBuf,
        /// The corpus manifest (`kioku corpus --out DIR` writes DIR/manifest.jsonl).
        #[arg(long)]
        corpus: PathBuf,
        /// Which split's clips.
        #[arg(long, value_parser = super::one_of(&Split::ALL, Split::as_str), default_value = "train")]
        split: Split,
        /// Offer at most this many clips (default: the whole split).
        #[arg(long)]
        clips: Option<usize>,
        /// Also offer the model's own answers to this many of the split's
        /// questions and requests, as text items that protect the LLM.
        #[arg(long, default_value_t = 0)]
        text_items: usize,
        /// Longest of those answers, in tokens.
        #[arg(long, default_value_t = 48)]
        answer_tokens: usize,
        #[command(flatten)]
        model: super::ModelArgs,
        /// Most items the buffer holds.
        #[arg(long, default_value_t = ReplayLimits::default().max_items)]
        max_items: usize,
        /// Most megabytes (10^6 bytes) the buffer holds.
        #[arg(long, default_value_t = ReplayLimits::default().max_bytes / 1_000_000)]
        max_mb: u64,
    },
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    match &args.command {
        ReplayCommand::Info { path, json } => info(&ReplayBuffer::open(path, ReplayLimits::NONE)?, *json),
        ReplayCommand::Seed { path, corpus, split, clips, text_items, answer_tokens, model, max_items, max_mb } => {
            let split = *split;
            let limits = ReplayLimits { max_items: *max_items, max_bytes: max_mb.saturating_mul(1_000_000) };
            let mut buffer = ReplayBuffer::open(path, limits)?;
            let summary = buffer.seed_from_corpus(corpus, split, *clips)?;
            // Saved after each phase: the answers take minutes, the clips are kept meanwhile.
            buffer.save()?;
            eprintln!("offered {} clips; the buffer holds {} of them", summary.offered, summary.held);
            if *text_items > 0 {
                let assistant = model.load()?;
                let corpus_dir = corpus.parent().unwrap_or(std::path::Path::new("."));
                let bar = indicatif::ProgressBar::new(*text_items as u64)
                    .with_style(indicatif::ProgressStyle::with_template("answering {bar:30} {pos}/{len}  ETA {eta}")?);
                let answers =
                    buffer.seed_text_answers(&assistant, corpus_dir, split, *text_items, *answer_tokens, &|| {
                        bar.inc(1)
                    })?;
                bar.finish_and_clear();
                eprintln!(
                    "offered {} of the model's answers; the buffer holds {} of them",
                    answers.offered, answers.held
                );
                buffer.save()?;
            }
            info(&buffer, false)
        }
    }
}

fn info(buffer: &ReplayBuffer, json: bool) -> Result<()> {
    let stats = buffer.stats();
    if json {
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    println!(
        "{}  {} items, {:.1} MB, {:.1} min of speech, {} offered over its life",
        buffer.path().display(),
        stats.items,
        stats.bytes as f64 / 1e6,
        stats.speech_seconds / 60.0,
        stats.seen
    );
    for (title, counts) in [("kind", &stats.by_kind), ("speaker", &stats.by_speaker), ("source", &stats.by_source)] {
        println!("by {title}:");
        for (name, count) in counts {
            println!("  {count:6}  {name}");
        }
    }
    Ok(())
}
