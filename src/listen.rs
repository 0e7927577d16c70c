//! Live listening: an audio source (microphone or WAV file) -> 16 kHz -> echo cancellation (while
//! answers are spoken) -> endpointing (voice activity or push-to-talk) -> utterances -> answers.
//! Answers come from a thread of their own, fed by a channel, so inference never holds up capture.
//! Speech that starts while an answer is being worked out or spoken is a barge-in: capture stops
//! the speaker and the generation at once, and the new utterance is heard as any other.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::assistant::{Answer, Assistant, Mode, Question, Request};
use crate::audio::echo::{Cancelled, EchoCanceller, Playback};
use crate::audio::vad::{Boundary, EnergyDetector, FrameDetector};
use crate::audio::{mean_square, read_wav, Resampler, Speech, Vad, VadConfig, SAMPLE_RATE};
use crate::generation::SamplingOptions;
use crate::model::silero::SileroDetector;
use crate::tts::Talker;

/// Mono audio at its native rate, chunk by chunk.
pub trait AudioSource {
    fn sample_rate(&self) -> u32;
    /// Whether audio arrives in real time: then latency counts from the end of speech.
    fn is_realtime(&self) -> bool;
    /// The next chunk and the instant its last sample was captured; `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<(Vec<f32>, Instant)>>;
    /// Samples lost so far because the pipeline fell behind.
    fn dropped_samples(&self) -> u64 {
        0
    }
}

/// How fast a recording is played into the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As a microphone would deliver it.
    RealTime,
    AsFastAsPossible,
}

/// A WAV file fed in 10 ms chunks.
pub struct WavSource {
    samples: Vec<f32>,
    sample_rate: u32,
    position: usize,
    pace: Pace,
    /// When the first chunk was due, at real-time pace.
    started: Option<Instant>,
}

impl WavSource {
    pub fn open(path: &Path, pace: Pace) -> Result<Self> {
        let audio = read_wav(path)?;
        Ok(Self { samples: audio.samples, sample_rate: audio.sample_rate, position: 0, pace, started: None })
    }
}

impl AudioSource for WavSource {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn is_realtime(&self) -> bool {
        self.pace == Pace::RealTime
    }

    fn next_chunk(&mut self) -> Result<Option<(Vec<f32>, Instant)>> {
        let start = self.position;
        let end = (start + (self.sample_rate as usize / 100).max(1)).min(self.samples.len());
        if start == end {
            return Ok(None);
        }
        self.position = end;
        let now = Instant::now();
        let mut arrived = now;
        if self.pace == Pace::RealTime {
            let started = *self.started.get_or_insert(now);
            arrived = started + Duration::from_secs_f64(end as f64 / f64::from(self.sample_rate));
            thread::sleep(arrived.saturating_duration_since(now));
        }
        Ok(Some((self.samples[start..end].to_vec(), arrived)))
    }
}

#[cfg(feature = "mic")]
impl AudioSource for crate::audio::capture::Microphone {
    fn sample_rate(&self) -> u32 {
        self.sample_rate()
    }

    fn is_realtime(&self) -> bool {
        true
    }

    fn next_chunk(&mut self) -> Result<Option<(Vec<f32>, Instant)>> {
        self.read().map(Some)
    }

    fn dropped_samples(&self) -> u64 {
        self.dropped_samples()
    }
}

/// What judges whether a frame is speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    /// Silero VAD's speech probability (needs a model file with `vad.*`).
    Silero,
    /// Energy and voicing: needs no model.
    Energy,
}

impl Detector {
    /// Silero when the model file has it, else energy.
    pub fn best_for(assistant: &Assistant) -> Self {
        if assistant.vad().is_some() {
            Self::Silero
        } else {
            Self::Energy
        }
    }

    /// The endpointer's defaults for this detector.
    pub fn default_config(self) -> VadConfig {
        match self {
            Self::Silero => VadConfig::for_probability(),
            Self::Energy => VadConfig::default(),
        }
    }
}

/// How utterances are cut from the stream.
#[derive(Debug, Clone)]
pub enum Endpointing {
    /// Voice activity detection.
    Voice(VadConfig, Detector),
    /// An utterance lasts while `talking` is set (e.g. Enter to start, Enter to stop), cut at
    /// `max_utterance_s` like spoken ones.
    PushToTalk { talking: Arc<AtomicBool>, max_utterance_s: f32 },
}

impl Endpointing {
    /// Fails with a one-line message when a setting is out of range.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Voice(config, _) => config.check(),
            Self::PushToTalk { max_utterance_s, .. } => {
                ensure!(
                    *max_utterance_s > 0.0,
                    "the maximum utterance length must be above 0 s, got {max_utterance_s}"
                );
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub mode: Mode,
    pub sampling: SamplingOptions,
    pub endpointing: Endpointing,
}

/// One answered utterance; times are seconds from the start of the stream.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub start_s: f64,
    pub end_s: f64,
    /// Known in cascade mode.
    pub transcript: Option<String>,
    pub answer: String,
    /// From the end of speech to the first answer token; for sources that are not real-time,
    /// from when inference took the utterance.
    pub latency_ms: f64,
    /// When answers are spoken: from the end of speech to the first spoken sample, counted as
    /// `latency_ms` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_audio_ms: Option<f64>,
}

/// Speech over an answer, which stopped it.
#[derive(Debug, Clone, Serialize)]
pub struct BargeIn {
    /// Stream time (s) where the speech began.
    pub onset_s: f64,
    /// Stream time (s) when the speaker and the generation were stopped.
    pub stopped_s: f64,
}

/// What [`listen`] reports as it goes; delivered from the capture and the inference thread.
pub enum Event<'a> {
    /// The level of the latest audio (dBFS), and whether an utterance is under way.
    Level {
        level_db: f32,
        speaking: bool,
    },
    /// Samples lost so far because capture outran the pipeline.
    Dropped(u64),
    /// Inference took an utterance.
    Answering {
        start_s: f64,
        end_s: f64,
    },
    /// Answer text as it streams.
    AnswerText(&'a str),
    Answered(&'a Reply),
    /// An utterance could not be answered (e.g. nothing intelligible in it).
    Failed {
        start_s: f64,
        end_s: f64,
        error: &'a crate::Error,
    },
    /// The user spoke over an answer: it was stopped.
    BargeIn(&'a BargeIn),
    /// Answers can no longer be spoken (e.g. the output device went away); they are still given
    /// as text.
    SpeechLost(&'a anyhow::Error),
}

/// An utterance on its way to inference.
struct Queued {
    speech: Speech,
    /// When its speech ended, for real-time sources.
    ended_at: Option<Instant>,
}

/// What capture tells inference: a paused utterance is answered early, and dropped if it resumes.
type Heard = Boundary<Queued>;

/// Listens to `source` until it ends (or fails), answering every utterance, and speaking the
/// answers through `talker` if given. Returns once every utterance heard has been answered; a
/// source error (a lost device) is returned after that.
pub fn listen(
    assistant: &Assistant,
    source: &mut dyn AudioSource,
    options: &ListenOptions,
    talker: Option<&mut Talker>,
    on_event: impl FnMut(Event<'_>) + Send,
) -> Result<()> {
    let mut segmenter = Segmenter::new(&options.endpointing, assistant)?;
    let mut resampler = Resampler::to_16k(source.sample_rate())?;
    // A recording read faster than real time cannot be talked over, nor hear the speaker.
    let mut duplex =
        talker.as_ref().filter(|_| source.is_realtime()).map(|talker| Duplex::new(Arc::clone(talker.playback())));
    let handler = Mutex::new(on_event);
    let emit = |event: Event<'_>| (handler.lock().unwrap_or_else(PoisonError::into_inner))(event);
    let (queue, heard) = channel();
    let shared = Shared { busy: AtomicBool::new(false), turn_over: Mutex::new(None) };
    thread::scope(|scope| {
        let answering = scope.spawn(|| answer_all(assistant, options, heard, &shared, Outlet::new(talker, &emit)));
        let captured = capture(source, &mut segmenter, &mut resampler, duplex.as_mut(), &shared, queue, &emit);
        if let Err(panic) = answering.join() {
            std::panic::resume_unwind(panic);
        }
        captured
    })
}

/// What the capture and the inference thread tell each other besides the utterances.
struct Shared {
    /// Inference is answering.
    busy: AtomicBool,
    /// The end (stream s) of paused speech whose words read as a finished turn: capture ends it
    /// after the shorter silence ([`Vad::end_turn_early`]).
    turn_over: Mutex<Option<f64>>,
}

/// Listening while kioku speaks: its own voice is taken out of the microphone's audio, and speech
/// over an answer stops it.
struct Duplex {
    playback: Arc<Playback>,
    canceller: EchoCanceller,
    /// The playback timeline's index of the stream's first 16 kHz sample, and samples since.
    origin: Option<u64>,
    position: u64,
}

impl Duplex {
    fn new(playback: Arc<Playback>) -> Self {
        Self { playback, canceller: EchoCanceller::new(), origin: None, position: 0 }
    }

    /// The user spoke over an answer: it stops, and the user's speech passes whole.
    fn barge_in(&mut self) {
        self.playback.interrupt();
        self.canceller.give_user_the_floor();
    }

    /// The microphone's 16 kHz audio, whose last sample came at `arrived`, without the speaker's.
    /// Samples are counted from the first chunk on, so the reference keeps step without jitter.
    fn cancel(&mut self, audio: &[f32], arrived: Instant) -> Cancelled {
        if audio.is_empty() {
            return Cancelled { gated: Vec::new(), residual: Vec::new() };
        }
        let origin =
            *self.origin.get_or_insert_with(|| self.playback.index_at(arrived).saturating_sub(audio.len() as u64));
        let reference = self.playback.reference(origin + self.position, audio.len());
        self.position += audio.len() as u64;
        self.canceller.process_both(audio, &reference)
    }
}

fn capture(
    source: &mut dyn AudioSource,
    segmenter: &mut Segmenter,
    resampler: &mut Resampler,
    mut duplex: Option<&mut Duplex>,
    shared: &Shared,
    queue: Sender<Heard>,
    emit: &(dyn Fn(Event<'_>) + Sync),
) -> Result<()> {
    let (rate, realtime) = (f64::from(source.sample_rate()), source.is_realtime());
    let (mut samples_in, mut dropped) = (0usize, 0);
    // Sending fails only if the inference thread died; its join reports why.
    let send = |boundaries: Vec<Boundary>, stream_s: f64, arrived: Instant, mut duplex: Option<&mut Duplex>| {
        let queued = |speech: Speech| {
            let behind = Duration::from_secs_f64((stream_s - speech.end_s).max(0.0));
            let ended_at = if realtime { arrived.checked_sub(behind) } else { None };
            Queued { speech, ended_at }
        };
        for boundary in boundaries {
            match (boundary, duplex.as_deref_mut()) {
                (Boundary::Started(onset_s), Some(duplex)) => {
                    if shared.busy.load(Ordering::Acquire) || duplex.playback.is_playing() {
                        duplex.barge_in();
                        let stopped_s = stream_s + Instant::now().saturating_duration_since(arrived).as_secs_f64();
                        emit(Event::BargeIn(&BargeIn { onset_s, stopped_s }));
                    }
                }
                (Boundary::Started(_), None) => {}
                (boundary, _) => {
                    let _ = queue.send(boundary.map(queued));
                }
            }
        }
    };
    while let Some((chunk, arrived)) = source.next_chunk()? {
        samples_in += chunk.len();
        let mut audio = resampler.process(&chunk);
        let turn_over = shared.turn_over.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut done: Vec<Boundary> = turn_over.and_then(|end_s| segmenter.end_turn_early(end_s)).into_iter().collect();
        done.extend(match duplex.as_deref_mut() {
            Some(duplex) => {
                let Cancelled { gated, residual } = duplex.cancel(&audio, arrived);
                audio = residual;
                segmenter.push_heard(&gated, &audio)?
            }
            None => segmenter.push(&audio)?,
        });
        if !audio.is_empty() {
            emit(Event::Level { level_db: level_db(&audio), speaking: segmenter.in_speech() });
        }
        send(done, samples_in as f64 / rate, arrived, duplex.as_deref_mut());
        if source.dropped_samples() > dropped {
            dropped = source.dropped_samples();
            emit(Event::Dropped(dropped));
        }
    }
    let mut done = segmenter.push(&resampler.flush())?;
    done.extend(segmenter.finish().map(Boundary::Ended));
    send(done, samples_in as f64 / rate, Instant::now(), None);
    Ok(())
}

fn answer_all(
    assistant: &Assistant,
    options: &ListenOptions,
    heard: Receiver<Heard>,
    shared: &Shared,
    mut out: Outlet<'_, '_>,
) {
    // Before anyone speaks: otherwise the first reply pays for building the prompt prefix.
    if let Err(e) = assistant.warm_up() {
        (out.emit)(Event::Failed { start_s: 0.0, end_s: 0.0, error: &crate::Error::working(e) });
    }
    // Messages read while an early answer was worked out, not handled yet.
    let mut backlog = VecDeque::new();
    while let Some(next) = backlog.pop_front().or_else(|| heard.recv().ok()) {
        shared.busy.store(true, Ordering::Release);
        match next {
            Boundary::Started(_) | Boundary::Resumed => {}
            Boundary::Ended(queued) => answer_now(assistant, options, queued, &mut out),
            Boundary::Paused(queued) => {
                answer_early(assistant, options, queued, &heard, &mut backlog, &shared.turn_over, &mut out)
            }
        }
        shared.busy.store(false, Ordering::Release);
    }
}

/// Where an answer goes as it streams: the listener's events, and the talker when answers are
/// spoken.
struct Outlet<'t, 'e> {
    emit: &'e (dyn Fn(Event<'_>) + Sync),
    talker: Option<&'t mut Talker>,
    /// The barge-in epoch the current answer began in, and when its first text went out.
    epoch: u64,
    first_text_at: Option<Instant>,
}

impl<'t, 'e> Outlet<'t, 'e> {
    fn new(talker: Option<&'t mut Talker>, emit: &'e (dyn Fn(Event<'_>) + Sync)) -> Self {
        Self { emit, talker, epoch: 0, first_text_at: None }
    }

    /// A new answer is being worked out.
    fn begin(&mut self) {
        self.first_text_at = None;
        if let Some(talker) = self.talker.as_deref_mut() {
            talker.begin_answer();
            self.epoch = talker.playback().epoch();
        }
    }

    /// Whether the user has spoken over the answer since it began.
    fn interrupted(&self) -> bool {
        self.talker.as_deref().is_some_and(|talker| talker.playback().epoch() != self.epoch)
    }

    fn text(&mut self, text: &str) {
        self.first_text_at.get_or_insert_with(Instant::now);
        (self.emit)(Event::AnswerText(text));
        if let Some(talker) = self.talker.as_deref_mut() {
            talker.say(text);
        }
    }

    /// Ends the answer's speech; returns how long after its first text its first sound came (ms).
    /// A speech failure is reported once, and answers go on in text.
    fn end_speech(&mut self) -> Option<f64> {
        let text_at = self.first_text_at.take();
        let talker = self.talker.as_deref_mut()?;
        match talker.end_answer() {
            Ok(audio_at) => Some(ms_between(text_at?, audio_at?)),
            Err(e) => {
                (self.emit)(Event::SpeechLost(&e));
                self.talker = None;
                None
            }
        }
    }

    /// Emits the outcome of answering the utterance at `span` (seconds), with its latency.
    fn report(
        &mut self,
        answered: Result<Answer, crate::Error>,
        (start_s, end_s): (f64, f64),
        latency_ms: impl FnOnce(&Answer) -> f64,
    ) {
        let audio_after_text_ms = self.end_speech();
        match answered {
            Ok(answer) => {
                let latency_ms = latency_ms(&answer);
                let first_audio_ms = audio_after_text_ms.map(|ms| latency_ms + ms);
                (self.emit)(Event::Answered(&Reply {
                    start_s,
                    end_s,
                    transcript: answer.transcript,
                    answer: answer.answer,
                    latency_ms,
                    first_audio_ms,
                }));
            }
            Err(error) => (self.emit)(Event::Failed { start_s, end_s, error: &error }),
        }
    }
}

/// Answers an utterance that has ended, streaming the answer as it comes.
fn answer_now(assistant: &Assistant, options: &ListenOptions, Queued { speech, ended_at }: Queued, out: &mut Outlet) {
    let taken = Instant::now();
    let (start_s, end_s) = (speech.start_s, speech.end_s);
    out.begin();
    (out.emit)(Event::Answering { start_s, end_s });
    let cancel = AtomicBool::new(false);
    let question = Question::Audio { samples: &speech.samples, mode: options.mode, instruction: None };
    let request = Request { cancel: Some(&cancel), ..Request::new(question, options.sampling.clone()) };
    let answered = assistant.respond(&request, &mut |text| {
        if out.interrupted() {
            cancel.store(true, Ordering::Relaxed);
        }
        out.text(text);
    });
    let waited_ms = ended_at.map_or(0.0, |t| ms_between(t, taken));
    out.report(answered, (start_s, end_s), |answer| waited_ms + answer.timings_ms.first_token);
}

/// What became of an utterance answered at a pause.
enum Fate {
    /// Capture has not said yet.
    Open,
    /// It ended at that pause (when this thread learnt it): the answer goes out.
    Ended(Queued, Instant),
    /// Speech resumed: the answer was for half a question.
    Resumed,
}

impl Fate {
    /// Takes capture's next message: the first end or resumption decides; the rest is for later.
    fn hear(&mut self, message: Heard, backlog: &mut VecDeque<Heard>) {
        match (&self, message) {
            (Fate::Open, Boundary::Ended(queued)) => *self = Fate::Ended(queued, Instant::now()),
            (Fate::Open, Boundary::Resumed) => *self = Fate::Resumed,
            (_, later) => backlog.push_back(later),
        }
    }
}

/// An early answer's text, held back until its utterance is known to have ended.
#[derive(Default)]
struct HeldAnswer {
    text: String,
    shown: bool,
}

impl HeldAnswer {
    /// Shows the answer so far, once; later text goes out as it comes.
    fn release(&mut self, span: (f64, f64), out: &mut Outlet) {
        if !std::mem::replace(&mut self.shown, true) {
            (out.emit)(Event::Answering { start_s: span.0, end_s: span.1 });
            if !self.text.is_empty() {
                out.text(&std::mem::take(&mut self.text));
            }
        }
    }
}

/// Starts answering the utterance heard up to a pause, so that the answer is ready when the
/// hangover confirms the end. Nothing is shown before then. If speech resumes instead, the answer
/// is cancelled and dropped, and the whole utterance is answered when it ends. A paused
/// utterance's audio is the start of the ended one's, with the same speech in it. When the LLM
/// reads the words as a finished turn, capture is told through `turn_over` to end it sooner.
fn answer_early(
    assistant: &Assistant,
    options: &ListenOptions,
    paused: Queued,
    heard: &Receiver<Heard>,
    backlog: &mut VecDeque<Heard>,
    turn_over: &Mutex<Option<f64>>,
    out: &mut Outlet,
) {
    out.begin();
    let cancel = AtomicBool::new(false);
    let (mut fate, mut held, mut first_token_at) = (Fate::Open, HeldAnswer::default(), None);
    let span = (paused.speech.start_s, paused.speech.end_s);
    let question = Question::Audio { samples: &paused.speech.samples, mode: options.mode, instruction: None };
    let threshold = match &options.endpointing {
        Endpointing::Voice(config, _) if config.turn_end_ms > 0 => Some(config.turn_end_probability),
        _ => None,
    };
    let judge = |probability: f32| {
        if threshold.is_some_and(|threshold| probability >= threshold) {
            *turn_over.lock().unwrap_or_else(PoisonError::into_inner) = Some(span.1);
        }
    };
    let on_turn_end: Option<&dyn Fn(f32)> = threshold.map(|_| &judge as _);
    let request = Request { cancel: Some(&cancel), on_turn_end, ..Request::new(question, options.sampling.clone()) };
    let answered = assistant.respond(&request, &mut |text| {
        first_token_at.get_or_insert_with(Instant::now);
        while matches!(fate, Fate::Open) {
            let Ok(message) = heard.try_recv() else { break };
            fate.hear(message, backlog);
        }
        if out.interrupted() {
            cancel.store(true, Ordering::Relaxed);
        }
        match fate {
            Fate::Open => held.text.push_str(text),
            Fate::Resumed => cancel.store(true, Ordering::Relaxed),
            Fate::Ended(..) => {
                held.release(span, out);
                out.text(text);
            }
        }
    });
    while matches!(fate, Fate::Open) {
        // Capture gone without an end (a lost device): nobody is waiting for this answer.
        let Ok(message) = heard.recv() else { return };
        fate.hear(message, backlog);
    }
    let Fate::Ended(Queued { ended_at, .. }, confirmed_at) = fate else { return };
    held.release(span, out);
    // The first token is seen when it exists and the end is confirmed, whichever is later.
    // Without a real-time clock, latency is the work to the first token, as for `answer_now`.
    let seen_at = first_token_at.map_or(confirmed_at, |t: Instant| t.max(confirmed_at));
    out.report(answered, span, |answer| ended_at.map_or(answer.timings_ms.first_token, |t| ms_between(t, seen_at)));
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// Energy of a stretch of audio in dBFS.
fn level_db(samples: &[f32]) -> f32 {
    let power = mean_square(samples);
    (10.0 * power.max(1e-10).log10()).max(-100.0)
}

/// Cuts the 16 kHz stream into utterances.
enum Segmenter {
    Voice(Box<Vad>),
    PushToTalk {
        talking: Arc<AtomicBool>,
        max_samples: usize,
        /// Samples seen so far.
        position: usize,
        recording: Option<Speech>,
    },
}

impl Segmenter {
    fn new(endpointing: &Endpointing, assistant: &Assistant) -> Result<Self> {
        endpointing.check()?;
        Ok(match endpointing {
            Endpointing::Voice(config, detector) => {
                let detector: Box<dyn FrameDetector> = match (detector, assistant.vad()) {
                    (Detector::Energy, _) => Box::new(EnergyDetector::new(config)),
                    (Detector::Silero, Some(model)) => {
                        Box::new(SileroDetector::new(Arc::clone(model), config.threshold)?)
                    }
                    (Detector::Silero, None) => {
                        anyhow::bail!("this model file has no voice activity detector (`vad.*`); repack it with `make model`, or use --vad energy")
                    }
                };
                Self::Voice(Box::new(Vad::with_detector(config.clone(), detector)?))
            }
            Endpointing::PushToTalk { talking, max_utterance_s } => {
                let max_samples = (max_utterance_s * SAMPLE_RATE as f32) as usize;
                Self::PushToTalk {
                    talking: Arc::clone(talking),
                    max_samples: max_samples.max(1),
                    position: 0,
                    recording: None,
                }
            }
        })
    }

    fn in_speech(&self) -> bool {
        match self {
            Self::Voice(vad) => vad.in_speech(),
            Self::PushToTalk { recording, .. } => recording.is_some(),
        }
    }

    fn push(&mut self, samples: &[f32]) -> Result<Vec<Boundary>> {
        self.push_heard(samples, samples)
    }

    /// Speech is detected in `detect`; utterances keep `keep` (see [`Vad::push_heard`]). Push to
    /// talk detects nothing: the user says when.
    fn push_heard(&mut self, detect: &[f32], keep: &[f32]) -> Result<Vec<Boundary>> {
        match self {
            Self::Voice(vad) => vad.push_heard(detect, keep),
            Self::PushToTalk { talking, max_samples, position, recording } => {
                let seconds = |samples: usize| samples as f64 / f64::from(SAMPLE_RATE);
                let mut done = Vec::new();
                if !talking.load(Ordering::Relaxed) {
                    done.extend(recording.take().map(|r| Boundary::Ended(Speech { end_s: seconds(*position), ..r })));
                    *position += keep.len();
                    return Ok(done);
                }
                for &sample in keep {
                    let r = recording.get_or_insert_with(|| Speech {
                        start_s: seconds(*position),
                        end_s: 0.0,
                        samples: Vec::new(),
                    });
                    r.samples.push(sample);
                    *position += 1;
                    if r.samples.len() >= *max_samples {
                        done.extend(
                            recording.take().map(|r| Boundary::Ended(Speech { end_s: seconds(*position), ..r })),
                        );
                    }
                }
                Ok(done)
            }
        }
    }

    /// See [`Vad::end_turn_early`]; push to talk ends when the user says.
    fn end_turn_early(&mut self, end_s: f64) -> Option<Boundary> {
        match self {
            Self::Voice(vad) => vad.end_turn_early(end_s),
            Self::PushToTalk { .. } => None,
        }
    }

    fn finish(&mut self) -> Option<Speech> {
        match self {
            Self::Voice(vad) => vad.finish(),
            Self::PushToTalk { position, recording, .. } => {
                let end_s = *position as f64 / f64::from(SAMPLE_RATE);
                recording.take().map(|r| Speech { end_s, ..r })
            }
        }
    }
}
