use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kioku::corpus::{generate, plan, Split};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct CorpusArgs {
    /// Output directory: {train,dev,test}/<id>.wav, {split}/transcripts.tsv and manifest.jsonl.
    /// Clips already there are reused; WAVs the manifest does not list are deleted.
    #[arg(long)]
    out: PathBuf,
    /// Seed for the order of utterances, their voice and augmentation, and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many utterances to synthesize, shared among the splits in proportion (default: all).
    #[arg(long)]
    utterances: Option<usize>,
    /// espeak-ng/sox pipelines run at once (default: the number of CPU cores).
    #[arg(long)]
    jobs: Option<usize>,
}

pub fn run(args: &CorpusArgs) -> Result<()> {
    let clips = plan(args.seed, args.utterances)?;
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = ProgressBar::new(clips.len() as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} clips  {elapsed} elapsed, ETA {eta}")?);
    let started = Instant::now();
    let summary = generate(&args.out, &clips, jobs, &|| bar.inc(1));
    bar.finish_and_clear();
    let summary = summary?;
    for split in Split::ALL {
        let entries: Vec<_> = summary.entries.iter().filter(|e| e.split == split).collect();
        let voices: BTreeSet<&str> = entries.iter().map(|e| e.voice.as_str()).collect();
        let minutes = entries.iter().map(|e| e.duration_s).sum::<f64>() / 60.0;
        eprintln!("{:5}: {:5} clips, {:6.1} min, {} voices", split.as_str(), entries.len(), minutes, voices.len());
    }
    eprintln!(
        "wrote {} ({} synthesized, {} reused, {} stale removed) in {:.1} s",
        args.out.join("manifest.jsonl").display(),
        summary.synthesized,
        summary.reused,
        summary.removed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
