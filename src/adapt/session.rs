//! One adaptation, end to end, as `kioku adapt` and `kioku enroll` run it:
//! check the recordings, open (or seed) the replay buffer, train, then write
//! the adapter and only after it the grown buffer. Both files are replaced
//! atomically at the very end, so a kill at any moment leaves the previous
//! adapter and buffer loadable.

use super::data::{load_recordings, Recording};
use super::replay::{ReplayBuffer, ReplayItem, ReplayLimits};
use super::trainer::{AdaptConfig, SpeakerTrainer, StepOutcome, MAX_ANSWER_TOKENS};
use crate::assistant::Assistant;
use crate::corpus::Split;
use crate::generation::SamplingOptions;
use crate::model::peft;
use anyhow::{ensure, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where replayed items come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplaySource {
    Off,
    /// The buffer file; when it does not exist yet it is seeded from the
    /// train split of the corpus directory `seed_corpus`, if given.
    Buffer {
        path: PathBuf,
        seed_corpus: Option<PathBuf>,
        limits: ReplayLimits,
    },
}

/// Earlier-voice clips a new buffer is seeded with when no corpus is given:
/// the study's buffer held 200 (docs/ADAPTATION.md, "The forgetting study").
const SEED_CLIPS: usize = 200;

/// The replay buffer a model uses by default: `replay.kbuf` beside it.
pub fn default_replay_path(model: &Path) -> PathBuf {
    model.with_file_name("replay.kbuf")
}

#[derive(Debug, Clone)]
pub struct AdaptRequest {
    pub model: PathBuf,
    /// WAV files and `transcripts.tsv`.
    pub data: PathBuf,
    /// The adapter directory to write.
    pub out: PathBuf,
    pub config: AdaptConfig,
    /// Passes over the recordings; replaces `config.steps` when set.
    pub epochs: Option<usize>,
    pub replay: ReplaySource,
    /// Stop training once this much time has passed since the start (the adapter is still saved).
    pub time_budget: Option<Duration>,
    /// Names the new speaker in the buffer (default: the data directory's name).
    pub speaker: Option<String>,
}

/// What happens, as it happens.
#[derive(Debug, Clone)]
pub enum AdaptEvent {
    Note(String),
    TrainingStarts { steps: usize },
    Step { step: usize, outcome: StepOutcome },
    Saving,
}

#[derive(Debug, Clone)]
pub struct AdaptReport {
    pub recordings: usize,
    pub steps: usize,
    pub planned_steps: usize,
    pub stopped_by_time_budget: bool,
    pub first_loss: f32,
    pub last_loss: f32,
    /// Wall time of the whole call (loading, training, saving).
    pub seconds: f64,
    /// Items in the buffer after saving (None without replay).
    pub buffer_items: Option<usize>,
}

pub fn adapt(request: &AdaptRequest, device: &Device, on_event: &mut dyn FnMut(AdaptEvent)) -> Result<AdaptReport> {
    let started = Instant::now();
    // Settings first: a bad flag must not wait for the recordings to load or a buffer to be seeded.
    request.config.validate()?;
    ensure!(request.epochs != Some(0), "--epochs must be at least 1");
    let mut recordings = load_recordings(&request.data)?;
    let mut config = request.config.clone();
    if let Some(epochs) = request.epochs {
        config.steps = config.steps_for_epochs(epochs, recordings.len());
    }
    let mut buffer = open_buffer(&request.replay, on_event)?;
    let mut trainer = SpeakerTrainer::new(&request.model, config, device)?;
    let (tensors, parameters) = trainer.trainable_size();
    on_event(AdaptEvent::Note(format!(
        "{} recordings; {tensors} adapter tensors ({:.2} M parameters) on {}",
        recordings.len(),
        parameters as f64 / 1e6,
        trainer.config().targets.join(", ")
    )));
    if trainer.trains_llm() && trainer.config().llm_scale != 1.0 {
        on_event(AdaptEvent::Note(format!(
            "the LLM's adapters will be saved at {} of their strength (--llm-scale)",
            trainer.config().llm_scale
        )));
    }
    if trainer.needs_typed_answers() {
        answer_typed(&request.model, &mut recordings, device, on_event)?;
    }
    if let Some(buffer) = &buffer {
        let stats = buffer.stats();
        let text = stats.by_kind.get("text").copied().unwrap_or(0);
        if text > 0 && !trainer.trains_llm() {
            on_event(AdaptEvent::Note(format!(
                "the buffer's {text} text items are skipped: no LLM module is among the targets"
            )));
        } else if text > 0 && !trainer.trains_llm_on_text() {
            on_event(AdaptEvent::Note(format!(
                "the buffer's {text} text items are skipped: the LLM's adapters act on audio turns only"
            )));
        }
    }

    let planned_steps = trainer.config().steps;
    on_event(AdaptEvent::TrainingStarts { steps: planned_steps });
    let training = Instant::now();
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    let mut stopped_by_time_budget = false;
    while trainer.steps_taken() < planned_steps {
        if let Some(budget) = request.time_budget {
            // Stop when the next step, at the mean pace so far, would overrun.
            let done = trainer.steps_taken();
            let pace = if done == 0 { Duration::ZERO } else { training.elapsed() / done as u32 };
            if started.elapsed() + pace > budget {
                stopped_by_time_budget = true;
                on_event(AdaptEvent::Note(format!("time budget reached after {done} of {planned_steps} steps")));
                break;
            }
        }
        let outcome = trainer.step(&recordings, buffer.as_ref())?;
        if trainer.steps_taken() == 1 {
            first_loss = outcome.loss;
        }
        last_loss = outcome.loss;
        on_event(AdaptEvent::Step { step: trainer.steps_taken(), outcome });
    }

    on_event(AdaptEvent::Saving);
    let base_name = request
        .model
        .file_name()
        .map_or_else(|| request.model.display().to_string(), |n| n.to_string_lossy().into_owned());
    let adapter = trainer.adapter()?.with_llm_scaled(trainer.config().llm_scale)?;
    peft::save(&adapter, &request.out, trainer.header(), &base_name)?;
    if let Some(buffer) = &mut buffer {
        let speaker = request.speaker.clone().unwrap_or_else(|| speaker_of(&request.data));
        offer_recordings(buffer, &recordings, &speaker);
        buffer.save()?;
    }
    Ok(AdaptReport {
        recordings: recordings.len(),
        steps: trainer.steps_taken(),
        planned_steps,
        stopped_by_time_budget,
        first_loss,
        last_loss,
        seconds: started.elapsed().as_secs_f64(),
        buffer_items: buffer.as_ref().map(ReplayBuffer::len),
    })
}

/// Fills in each recording's typed answer: the base model's reply to its
/// transcript as a typed question, greedy and as long as the trainer uses.
fn answer_typed(
    model: &Path,
    recordings: &mut [Recording],
    device: &Device,
    on_event: &mut dyn FnMut(AdaptEvent),
) -> Result<()> {
    on_event(AdaptEvent::Note(format!(
        "answering the {} transcripts as typed questions with the base model: the targets of the spoken task",
        recordings.len()
    )));
    let assistant = Assistant::load(model, device)?;
    let sampling = SamplingOptions { max_tokens: MAX_ANSWER_TOKENS, ..SamplingOptions::default() };
    for recording in recordings {
        let answer = assistant.ask_text(&recording.text, &sampling, &mut |_| {})?.answer;
        recording.typed_answer = Some(answer);
    }
    Ok(())
}

fn open_buffer(source: &ReplaySource, on_event: &mut dyn FnMut(AdaptEvent)) -> Result<Option<ReplayBuffer>> {
    let ReplaySource::Buffer { path, seed_corpus, limits } = source else {
        on_event(AdaptEvent::Note("replay off: training on the new speaker alone".into()));
        return Ok(None);
    };
    let existed = path.exists();
    let mut buffer = ReplayBuffer::open(path, *limits)?;
    match seed_corpus {
        Some(corpus) if !existed => {
            let summary = buffer.seed_from_corpus(&corpus.join("manifest.jsonl"), Split::Train, None)?;
            on_event(AdaptEvent::Note(format!(
                "new replay buffer {} seeded from {}: holds {} of {} clips (saved when training ends)",
                path.display(),
                corpus.display(),
                summary.held,
                summary.offered
            )));
        }
        None if !existed => {
            on_event(AdaptEvent::Note(format!(
                "no replay buffer at {} yet: synthesizing {SEED_CLIPS} clips of the voices the model was trained on to seed it (once; --seed-corpus DIR uses a corpus instead)",
                path.display()
            )));
            let summary = buffer.seed_synthesized(SEED_CLIPS, &|| {})?;
            on_event(AdaptEvent::Note(format!("the new buffer holds {} of {} clips (saved when training ends)", summary.held, summary.offered)));
        }
        _ if buffer.is_empty() => on_event(AdaptEvent::Note(format!(
            "replay buffer {} is empty (seed it with --seed-corpus DIR or `kioku replay seed`): nothing to replay this time",
            path.display()
        ))),
        _ => on_event(AdaptEvent::Note(format!("replaying from {} ({} items)", path.display(), buffer.len()))),
    }
    Ok(Some(buffer))
}

/// The new speaker's recordings join the reservoir, as items of `adapt:<speaker>`.
pub fn offer_recordings(buffer: &mut ReplayBuffer, recordings: &[Recording], speaker: &str) {
    let source = format!("adapt:{speaker}");
    for r in recordings {
        buffer.offer(ReplayItem::speech(&format!("{speaker}/{}", r.id), &source, &r.audio_16k, &r.text, speaker));
    }
}

fn speaker_of(data: &Path) -> String {
    let absolute = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    absolute.file_name().map_or_else(|| "speaker".to_string(), |n| n.to_string_lossy().into_owned())
}
