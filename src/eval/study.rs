//! The study kioku grew from, reproduced on our task (docs/DESIGN.md, "Forgetting, and the remedies
//! kioku offers"): from the same start, adapt to one new synthetic speaker with each remedy against
//! forgetting (none, replay, a discounted LoRA scale, a linear merge with the base, and their
//! combinations; Whisper-only and with LoRA on the LLM, that LoRA acting on every turn or gated
//! to audio turns, the spoken clips trained to their transcript or to the typed answer, the last
//! saved at `kioku adapt`'s discounted LLM scale), and hand every result to the forgetting report
//! as one arm with its cost.
//!
//! Everything lands in one work directory and is reused when present, so a
//! stopped study resumes where it was: the speaker's clips, the seeded replay
//! buffer, each trained adapter (with its `cost.json`) and each merged model.

use super::forgetting::{Arm, Cost};
use crate::adapt::merge::{merge, Input, InputKind, Method};
use crate::adapt::replay::{ReplayBuffer, ReplayLimits};
use crate::adapt::session::{adapt, AdaptEvent, AdaptRequest, ReplaySource};
use crate::adapt::trainer::{AdaptConfig, SpokenTarget, DEFAULT_LLM_SCALE};
use crate::assistant::Assistant;
use crate::corpus::{
    split_of, synthesize_transcribed_dir, utterance_bank, voice_named, Split, Voice, TRANSCRIPTS_FILE, VOICES,
};
use crate::model::peft::AdapterSpec;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// LoRA targets of the arms that adapt the LLM too: the default Whisper
/// targets plus the LLM's attention projections.
pub const LLM_ARM_TARGETS: [&str; 3] = ["encoder-attn", "decoder", "llm-attn"];

#[derive(Debug, Clone)]
pub struct StudyOptions {
    pub model: PathBuf,
    /// Corpus directory: the replay buffer is seeded from its train split.
    pub corpus: PathBuf,
    pub work: PathBuf,
    /// `Voice::name()` of the new speaker; a test-split voice, never heard in training.
    pub voice: String,
    pub train_clips: usize,
    pub held_out_clips: usize,
    /// The training recipe of every arm (its targets are replaced in the LLM arms).
    pub adapt: AdaptConfig,
    /// Speech clips and base-model text answers in the seeded buffer.
    pub buffer_clips: usize,
    pub buffer_text_items: usize,
    /// LoRA scales γ of the discount arms.
    pub discounts: Vec<f64>,
    /// Weight w of the adapter in the linear merge `θ_base + w·τ`.
    pub merge_weight: f64,
}

impl StudyOptions {
    pub fn new(model: &Path, corpus: &Path, work: &Path) -> Self {
        Self {
            model: model.to_path_buf(),
            corpus: corpus.to_path_buf(),
            work: work.to_path_buf(),
            voice: default_voice().name(),
            train_clips: 24,
            held_out_clips: 16,
            adapt: AdaptConfig::default(),
            buffer_clips: 200,
            buffer_text_items: 60,
            discounts: vec![0.5, 0.75],
            merge_weight: 0.5,
        }
    }
}

/// A test voice the default model hears badly (held-out WER 0.349 in the study).
fn default_voice() -> &'static Voice {
    VOICES.iter().find(|v| v.variant == "grandpa").unwrap_or(&VOICES[VOICES.len() - 1])
}

/// What the study prepared: the arms to evaluate, and the held-out clips of
/// the new speaker to evaluate them on.
pub struct StudyArms {
    pub arms: Vec<Arm>,
    pub held_out: PathBuf,
}

/// One adaptation of the study.
struct Training {
    name: &'static str,
    targets: &'static [&'static str],
    replay: bool,
    /// The LLM's adapters act on audio turns only (`kioku adapt --llm-turns audio`).
    audio_turns_only: bool,
    spoken_target: SpokenTarget,
    /// The strength the LLM's adapters are saved at (`kioku adapt --llm-scale`).
    llm_scale: f64,
}

impl Training {
    const fn new(name: &'static str, targets: &'static [&'static str], replay: bool) -> Self {
        Self { name, targets, replay, audio_turns_only: false, spoken_target: SpokenTarget::Transcript, llm_scale: 1.0 }
    }

    /// An LLM arm gated to audio turns, with replayed speech.
    const fn gated(name: &'static str, spoken_target: SpokenTarget) -> Self {
        Self { audio_turns_only: true, spoken_target, ..Self::new(name, &LLM_ARM_TARGETS, true) }
    }
}

const TRAININGS: [Training; 6] = [
    Training::new("naive", &crate::adapt::trainer::DEFAULT_TARGETS, false),
    Training::new("replay", &crate::adapt::trainer::DEFAULT_TARGETS, true),
    Training::new("llm-naive", &LLM_ARM_TARGETS, false),
    Training::new("llm-replay", &LLM_ARM_TARGETS, true),
    Training::gated("llm-gated", SpokenTarget::Transcript),
    // What `kioku adapt` does with LLM targets; the other LLM arms keep what the LLM learnt whole.
    Training { llm_scale: DEFAULT_LLM_SCALE, ..Training::gated("llm-gated-answer", SpokenTarget::TypedAnswer) },
];

/// Cost of one trained adapter, kept beside it so that a resumed study reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TrainingCost {
    seconds: f64,
    megabytes: f64,
}

/// Makes (or reuses) everything the study's arms need and lists them, base first.
pub fn prepare(options: &StudyOptions, device: &Device, on_event: &mut dyn FnMut(AdaptEvent)) -> Result<StudyArms> {
    std::fs::create_dir_all(&options.work).with_context(|| format!("cannot create {}", options.work.display()))?;
    let (train, held_out) = speaker_clips(options, on_event)?;
    let seed_buffer = seeded_buffer(options, device, on_event)?;
    let mut arms = vec![Arm::new("base", &options.model, Vec::new())];
    for training in &TRAININGS {
        let dir = options.work.join(training.name);
        let adapter = dir.join("adapter");
        let trained = train_arm(options, training, &train, &seed_buffer, &dir, device, on_event)?;
        let with = |name: String, scale: f64, cost: TrainingCost| {
            let mut arm = Arm::new(&name, &options.model, vec![AdapterSpec { path: adapter.clone(), scale }]);
            arm.cost = Cost { train_seconds: Some(cost.seconds), megabytes: Some(cost.megabytes) };
            arm
        };
        arms.push(with(training.name.to_string(), 1.0, trained));
        if training.targets == LLM_ARM_TARGETS {
            continue;
        }
        for &gamma in &options.discounts {
            arms.push(with(format!("{}-x{gamma}", training.name), gamma, trained));
        }
        let merged = options.work.join(format!("{}-merged.safetensors", training.name));
        let started = Instant::now();
        if !merged.exists() {
            on_event(AdaptEvent::Note(format!(
                "merging {} into {} at w = {}",
                training.name,
                merged.display(),
                options.merge_weight
            )));
            let input = Input { kind: InputKind::Adapter, path: adapter.clone(), weight: options.merge_weight };
            merge(&options.model, &[input], Method::Linear, &merged)?;
        }
        let mut arm = Arm::new(&format!("{}-merge", training.name), &merged, Vec::new());
        // The merged file replaces the base on disk: it costs a whole model, the buffer aside.
        let buffer_mb = if training.replay { megabytes(&dir.join("replay.kbuf"))? } else { 0.0 };
        arm.cost = Cost {
            train_seconds: Some(trained.seconds + started.elapsed().as_secs_f64()),
            megabytes: Some(megabytes(&merged)? + buffer_mb),
        };
        arms.push(arm);
    }
    Ok(StudyArms { arms, held_out })
}

/// The new speaker's training and held-out clips, synthesized once:
/// test-split texts (never in the buffer) spoken by `options.voice`.
fn speaker_clips(options: &StudyOptions, on_event: &mut dyn FnMut(AdaptEvent)) -> Result<(PathBuf, PathBuf)> {
    let voice = voice_named(&options.voice)?;
    let texts: Vec<String> = utterance_bank()
        .into_iter()
        .filter(|u| split_of(u) == Split::Test && u.text.split_whitespace().count() <= 12)
        .step_by(5)
        .take(options.train_clips + options.held_out_clips)
        .map(|u| u.text)
        .collect();
    if texts.len() < options.train_clips + options.held_out_clips {
        bail!("the utterance bank has only {} test-split texts for the speaker's clips", texts.len());
    }
    let dirs = (options.work.join("speaker/train"), options.work.join("speaker/held-out"));
    for (dir, texts) in [(&dirs.0, &texts[..options.train_clips]), (&dirs.1, &texts[options.train_clips..])] {
        if !dir.join(TRANSCRIPTS_FILE).exists() {
            on_event(AdaptEvent::Note(format!(
                "synthesizing {} clips of {} into {}",
                texts.len(),
                options.voice,
                dir.display()
            )));
            synthesize_transcribed_dir(dir, voice, texts)?;
        }
    }
    Ok(dirs)
}

/// The buffer every replay arm starts from: earlier voices of the corpus
/// train split and the base model's own text answers.
fn seeded_buffer(options: &StudyOptions, device: &Device, on_event: &mut dyn FnMut(AdaptEvent)) -> Result<PathBuf> {
    let path = options.work.join("seed.kbuf");
    if path.exists() {
        return Ok(path);
    }
    on_event(AdaptEvent::Note(format!(
        "seeding {} with {} corpus clips and {} base-model answers",
        path.display(),
        options.buffer_clips,
        options.buffer_text_items
    )));
    let mut buffer = ReplayBuffer::new(&path, ReplayLimits::default(), 0);
    buffer.seed_from_corpus(&options.corpus.join("manifest.jsonl"), Split::Train, Some(options.buffer_clips))?;
    let assistant = Assistant::load(&options.model, device)?;
    buffer.seed_text_answers(&assistant, &options.corpus, Split::Train, options.buffer_text_items, 32, &|| {})?;
    buffer.save()?;
    Ok(path)
}

fn train_arm(
    options: &StudyOptions,
    training: &Training,
    data: &Path,
    seed_buffer: &Path,
    dir: &Path,
    device: &Device,
    on_event: &mut dyn FnMut(AdaptEvent),
) -> Result<TrainingCost> {
    let cost_file = dir.join("cost.json");
    if let Ok(text) = std::fs::read_to_string(&cost_file) {
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; delete it to retrain", cost_file.display()));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let replay = if training.replay {
        // Each arm grows its own copy, so that every arm starts from the same buffer.
        let path = dir.join("replay.kbuf");
        std::fs::copy(seed_buffer, &path)
            .with_context(|| format!("cannot copy {} to {}", seed_buffer.display(), path.display()))?;
        ReplaySource::Buffer { path, seed_corpus: None, limits: ReplayLimits::default() }
    } else {
        ReplaySource::Off
    };
    on_event(AdaptEvent::Note(format!(
        "arm {}: {} with replay {}",
        training.name,
        training.targets.join(", "),
        training.replay
    )));
    let config = AdaptConfig {
        targets: training.targets.iter().map(|t| t.to_string()).collect(),
        llm_on_audio_turns_only: training.audio_turns_only,
        spoken_target: training.spoken_target,
        llm_scale: training.llm_scale,
        ..options.adapt.clone()
    };
    let request = AdaptRequest {
        model: options.model.clone(),
        data: data.to_path_buf(),
        out: dir.join("adapter"),
        config,
        epochs: None,
        replay,
        time_budget: None,
        speaker: None,
    };
    let report = adapt(&request, device, on_event)?;
    let buffer_mb = if training.replay { megabytes(&dir.join("replay.kbuf"))? } else { 0.0 };
    let cost = TrainingCost { seconds: report.seconds, megabytes: megabytes(&request.out)? + buffer_mb };
    crate::atomic::write_bytes(&cost_file, serde_json::to_string_pretty(&cost)?.as_bytes())?;
    Ok(cost)
}

/// Size on disk of a file, or of the files directly in a directory, in MB.
fn megabytes(path: &Path) -> Result<f64> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).with_context(|| format!("cannot read {}", p.display()));
    let bytes = if path.is_dir() {
        let mut total = 0;
        for entry in std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))? {
            total += size(&entry?.path())?;
        }
        total
    } else {
        size(path)?
    };
    Ok(bytes as f64 / 1e6)
}
