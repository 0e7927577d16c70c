use super::ModelArgs;
use anyhow::{ensure, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kioku::corpus::{read_manifest, Split};
use kioku::eval::pocketsphinx;
use kioku::eval::projector::{evaluate, AlignReport, SpokenClip};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalAlignArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Corpus made by `kioku corpus`.
    #[arg(long)]
    corpus: PathBuf,
    #[arg(long, value_parser = super::one_of(&Split::ALL, Split::as_str), default_value = "test")]
    split: Split,
    /// Evaluate a seeded random subset of this many clips (default: the whole split).
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Answers are compared up to this many tokens.
    #[arg(long, default_value_t = 32)]
    max_answer_tokens: usize,
    /// Also measure repeat WER on the real pocketsphinx-testdata recordings.
    #[arg(long)]
    real_speech: bool,
    /// Writes eval-align.md and eval-align.json here.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
}

pub fn run(args: &EvalAlignArgs) -> Result<()> {
    let split = args.split;
    let mut entries: Vec<_> = read_manifest(&args.corpus)?.into_iter().filter(|e| e.split == split).collect();
    ensure!(!entries.is_empty(), "the corpus {} has no {} clips", args.corpus.display(), split.as_str());
    if let Some(limit) = args.limit {
        entries.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
        entries.truncate(limit);
    }
    let corpus_clips: Vec<SpokenClip> = entries.iter().map(|e| SpokenClip::from_manifest(&args.corpus, e)).collect();
    let real_clips: Vec<SpokenClip> = if args.real_speech {
        pocketsphinx::real_speech()?
            .into_iter()
            .map(|c| SpokenClip { path: c.path, text: c.text, question: None })
            .collect()
    } else {
        Vec::new()
    };
    let assistant = args.model.load()?;
    let bar = ProgressBar::new((corpus_clips.len() + real_clips.len()) as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} clips  {elapsed} elapsed, ETA {eta}")?);
    let mut reports = vec![evaluate(
        &assistant,
        &format!("corpus {} split", split.as_str()),
        &corpus_clips,
        args.max_answer_tokens,
        &|| bar.inc(1),
    )?];
    if !real_clips.is_empty() {
        reports.push(evaluate(
            &assistant,
            "pocketsphinx-testdata (real speech)",
            &real_clips,
            args.max_answer_tokens,
            &|| bar.inc(1),
        )?);
    }
    bar.finish_and_clear();
    let markdown: String = reports.iter().map(AlignReport::markdown).collect::<Vec<_>>().join("\n");
    print!("{markdown}");
    std::fs::create_dir_all(&args.out)?;
    kioku::atomic::write_bytes(&args.out.join("eval-align.md"), markdown.as_bytes())?;
    kioku::atomic::write_bytes(&args.out.join("eval-align.json"), serde_json::to_string_pretty(&reports)?.as_bytes())?;
    eprintln!("wrote {}/eval-align.{{md,json}}", args.out.display());
    Ok(())
}
