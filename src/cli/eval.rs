use super::adapt::AdaptProgress;
use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kioku::corpus::Split;
use kioku::eval::forgetting::{evaluate, Arm, EvalOptions, Step};
use kioku::eval::sets::EvalSets;
use kioku::eval::study::{self, StudyOptions};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvalArgs {
    /// The base model, and with --adapter the arm "adapted" (base + those adapters).
    #[command(flatten)]
    model: ModelArgs,
    /// Another arm: NAME=MODEL[+ADAPTER[:SCALE]]… (empty MODEL: the --model file; a '+' inside an
    /// existing path is part of it). Repeatable.
    #[arg(long = "arm", value_name = "NAME=MODEL[+ADAPTER[:SCALE]]")]
    arms: Vec<String>,
    /// The new speaker's held-out clips: WAV files and transcripts.tsv (`id<TAB>text`).
    #[arg(long, value_name = "DIR")]
    new_speaker: Option<PathBuf>,
    /// At most this many new-speaker clips.
    #[arg(long, default_value_t = 40)]
    new_speaker_clips: usize,
    /// Corpus directory (`kioku corpus --out DIR`): earlier speakers' clips, and spoken test questions.
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// The corpus split whose voices count as earlier speakers.
    #[arg(long, default_value = "dev")]
    earlier_split: String,
    /// Earlier-speaker clips sampled from that split.
    #[arg(long, default_value_t = 40)]
    earlier_clips: usize,
    /// Real-speech clips from pocketsphinx-testdata (0 to 10).
    #[arg(long, default_value_t = 10)]
    real_clips: usize,
    /// Test-split questions asked as text (and spoken, end-to-end, when the model has a projector and --corpus is given).
    #[arg(long, default_value_t = 40)]
    questions: usize,
    /// Speak the test questions anew in this voice for the end-to-end answers
    /// (default: the corpus clips' voices; with --study, the study's new speaker).
    #[arg(long, value_name = "VOICE")]
    question_voice: Option<String>,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 48)]
    answer_tokens: usize,
    /// Seed of every sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run the forgetting study first: adapt one new synthetic speaker with every
    /// remedy (naive, replay, LoRA-scale discount, linear merge with the base;
    /// Whisper-only and with LoRA on the LLM) and report every result as an arm.
    /// Needs --corpus; the speaker's held-out clips become --new-speaker.
    #[arg(long, requires = "corpus")]
    study: bool,
    /// Work directory of --study: clips, buffers, adapters, merged models (reused when present).
    #[arg(long, default_value = "study", value_name = "DIR")]
    study_dir: PathBuf,
    /// The new speaker of --study (a test-split voice name, e.g. en-us-nyc+m7-s170-p55).
    #[arg(long, value_name = "VOICE")]
    study_voice: Option<String>,
    /// LoRA scales γ of the study's discount arms.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75")]
    study_discounts: Vec<f64>,
    /// Where report.md, report.json and report.svg go.
    #[arg(long, default_value = "eval-report")]
    out: PathBuf,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let base = &args.model.source.model;
    let device = kioku::device::parse_device(&args.model.source.device)?;
    let mut new_speaker = args.new_speaker.clone();
    let mut question_voice = args.question_voice.clone();
    let mut arms = vec![Arm::new("base", base, Vec::new())];
    if args.study {
        let corpus = args.corpus.as_deref().context("--study needs --corpus")?;
        let mut options = StudyOptions::new(base, corpus, &args.study_dir);
        options.voice = args.study_voice.clone().unwrap_or(options.voice);
        options.discounts = args.study_discounts.clone();
        let mut progress = AdaptProgress::default();
        let study = study::prepare(&options, &device, &mut |event| progress.show(event))?;
        arms = study.arms;
        new_speaker = new_speaker.or(Some(study.held_out));
        question_voice = question_voice.or(Some(options.voice));
    }
    if !args.model.adapters.is_empty() {
        arms.push(Arm::new("adapted", base, args.model.adapters.clone()));
    }
    for text in &args.arms {
        arms.push(Arm::parse(text, base)?);
    }
    let sets = sets(args, new_speaker.as_deref(), question_voice.as_deref())?;
    let options = EvalOptions { device, answer_tokens: args.answer_tokens };
    let bar = ProgressBar::new(0)
        .with_style(ProgressStyle::with_template("{msg:24} {bar:30} {pos}/{len}  {elapsed} elapsed, ETA {eta}")?);
    let report = evaluate(&arms, &sets, &options, &mut |step| match step {
        Step::Arm { index, name, items } => {
            bar.reset();
            bar.set_length(items as u64);
            bar.set_message(format!("arm {}/{} {name}", index + 1, arms.len()));
            // Also a plain line, for logs where the bar is not drawn.
            bar.suspend(|| eprintln!("evaluating arm {}/{} {name} on {items} items", index + 1, arms.len()));
        }
        Step::Item => bar.inc(1),
    })?;
    bar.finish_and_clear();
    report.write(&args.out)?;
    print!("{}", report.markdown());
    eprintln!("wrote report.md, report.json and report.svg to {}", args.out.display());
    Ok(())
}

fn sets(args: &EvalArgs, new_speaker: Option<&Path>, question_voice: Option<&str>) -> Result<EvalSets> {
    let mut sets = EvalSets::default();
    if let Some(dir) = new_speaker {
        sets = sets.with_new_speaker(dir, args.new_speaker_clips, args.seed)?;
    }
    if let Some(dir) = &args.corpus {
        let Some(split) = Split::ALL.into_iter().find(|s| s.as_str() == args.earlier_split) else {
            bail!("unknown --earlier-split {:?}: use train, dev or test", args.earlier_split);
        };
        sets = sets.with_earlier_speakers(dir, split, args.earlier_clips, args.seed)?;
    }
    sets = sets.with_real_speech(args.real_clips)?.with_questions(args.corpus.as_deref(), args.questions, args.seed)?;
    if let Some(voice) = question_voice {
        sets = sets.with_questions_spoken_by(voice, &args.out.join("spoken-questions"))?;
    }
    if sets.items(false) == 0 {
        bail!("nothing to evaluate: give --new-speaker or --corpus, or leave --real-clips / --questions above 0");
    }
    Ok(sets)
}
