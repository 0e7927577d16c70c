//! Endpointing: where speech starts and ends in a 16 kHz stream, offline and in real time.
//!
//! A [`FrameDetector`] judges each frame as silence, weak activity or speech. Two exist:
//! - Silero VAD's speech probability (`model::silero`), with hysteresis: speech at `threshold`,
//!   still active down to 0.15 below it, as the silero-vad package's own segmenter does;
//! - this file's [`EnergyDetector`], the fallback for a model file without a VAD. Every 30 ms frame
//!   gets its energy in dB above an adaptive noise floor (and above an absolute minimum level), and
//!   its voicing: the peak normalised autocorrelation of the pre-emphasised frame at pitch lags (80
//!   to 400 Hz). Voiced speech repeats itself every pitch period (0.7 to 1); hiss and rumble do
//!   not, once pre-emphasis has whitened them (about 0.2). Loud frames are active, loud voiced
//!   frames are speech.
//!
//! An utterance starts after `min_speech_ms` of active frames, at least half of them speech; it
//! keeps going while frames are active (so unvoiced consonants count) and ends after `hangover_ms`
//! without. Its audio starts `pre_roll_ms` before the detected start so first syllables are kept.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{ensure, Result};
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::{mean_square, SAMPLE_RATE};

/// Samples per frame of the energy detector: 30 ms at 16 kHz.
pub const FRAME: usize = 480;
const FRAME_S: f32 = FRAME as f32 / SAMPLE_RATE as f32;
/// How far below its threshold a speech probability may fall and still keep an utterance going.
const PROBABILITY_HYSTERESIS: f32 = 0.15;
/// Pitch lags searched for voicing: 400 Hz down to 80 Hz.
const LAGS: std::ops::RangeInclusive<usize> = 40..=200;
/// Long enough that the autocorrelation by FFT does not wrap around at the longest lag.
const FFT_LEN: usize = 1024;
/// The floor follows quieter frames within about 0.1 s, louder ones within 1 s (idle) or 8 s
/// (during speech): fast enough to learn a new fan, slow enough not to learn the talker.
const FLOOR_FALL_S: f32 = 0.1;
const FLOOR_RISE_IDLE_S: f32 = 1.0;
const FLOOR_RISE_SPEECH_S: f32 = 8.0;
/// Energy of digital silence, instead of minus infinity.
const SILENCE_DB: f32 = -100.0;

/// Thresholds of the endpointer; every one can be set from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// Speech probability at which a frame counts as speech, for a detector that gives one (Silero).
    pub threshold: f32,
    /// Energy detector: how far above the noise floor a frame must be to count as speech (dB).
    pub threshold_db: f32,
    /// Energy detector: frames quieter than this (dBFS) never count as speech, whatever the floor.
    pub min_level_db: f32,
    /// Energy detector: frames at least this voiced (0 to 1; noise is about 0.2, vowels 0.7 to 1) can start speech.
    pub min_voicing: f32,
    /// Active audio, at least half of it speech, needed before an utterance starts (ms).
    pub min_speech_ms: u32,
    /// Audio kept from before the detected start (ms).
    pub pre_roll_ms: u32,
    /// Silence that ends an utterance (ms).
    pub hangover_ms: u32,
    /// Silence after which the utterance so far is reported as [`Boundary::Paused`], so that
    /// answering can start before the hangover confirms the end (ms; 0: never).
    pub pause_ms: u32,
    /// Silence that ends an utterance whose words already read as a finished turn (ms; see
    /// [`Vad::end_turn_early`]). At most the hangover; 0: always wait for the hangover.
    pub turn_end_ms: u32,
    /// How likely the end of the user's turn must be, as the LLM reads the words, for
    /// `turn_end_ms` to end it (the endpointer itself only takes the cue). SmolLM2-135M gives
    /// half questions cut at a pause ("What is the capital", "How many days", "Can you tell
    /// me") at most 0.012, and whole ones 0.009–0.93, most above 0.05; a cue that fires wrongly
    /// splits a question, one that does not fire costs only the rest of the hangover. Over the
    /// corpus's 2244 questions, 0.05 passes 94.6 % of them and 6.1 % of their first halves.
    pub turn_end_probability: f32,
    /// Longer speech is cut into utterances of at most this length (s).
    pub max_utterance_s: f32,
}

/// The energy detector's defaults: its loudness dips between syllables need a long hangover.
impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            threshold_db: 9.0,
            min_level_db: -50.0,
            min_voicing: 0.5,
            min_speech_ms: 120,
            pre_roll_ms: 300,
            hangover_ms: 700,
            pause_ms: 0,
            turn_end_ms: 0,
            turn_end_probability: 0.05,
            max_utterance_s: 15.0,
        }
    }
}

impl VadConfig {
    /// Defaults for Silero's speech probability. 400 ms of silence keeps pauses of up to 450 ms
    /// inside a question (330–350 ms split some 350–400 ms pauses; tests/listen.rs checks 300–400).
    /// Answering starts after 150 ms of silence; its transcript and the LLM's reading of it are
    /// ready about 200 ms later (release build, 2 cores), and words read as a finished turn then
    /// end the question at once instead of at 400 ms: end of speech → first token on the three
    /// questions of tests/listen.rs is 402–512 ms, 457–641 ms without the cue (noisy runs).
    /// Starting after 96 ms gave 326–385 ms, but with 96 or 128 ms of audio after the last speech
    /// frame Whisper heard "What is the capital of France?" in tests/listen.rs as "…and
    /// friends?", and answered about the United States; 150 ms keeps it right.
    pub fn for_probability() -> Self {
        Self { min_speech_ms: 96, hangover_ms: 400, pause_ms: 150, turn_end_ms: 200, ..Self::default() }
    }

    /// Fails with a one-line message when a threshold is out of range.
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.threshold > PROBABILITY_HYSTERESIS && self.threshold < 1.0,
            "the speech probability threshold must be in ({PROBABILITY_HYSTERESIS}, 1), got {}",
            self.threshold
        );
        ensure!(self.threshold_db > 0.0, "the speech threshold must be above 0 dB, got {}", self.threshold_db);
        ensure!(
            (0.0..=1.0).contains(&self.min_voicing),
            "the minimum voicing must be in [0, 1], got {}",
            self.min_voicing
        );
        ensure!(self.min_speech_ms > 0, "the minimum speech length must be above 0 ms");
        ensure!(self.hangover_ms > 0, "the hangover must be above 0 ms");
        ensure!(
            self.pause_ms < self.hangover_ms,
            "the pause that starts an early answer ({} ms) must be shorter than the hangover ({} ms)",
            self.pause_ms,
            self.hangover_ms
        );
        ensure!(
            (0.0..=1.0).contains(&self.turn_end_probability),
            "the end-of-turn probability must be in [0, 1], got {}",
            self.turn_end_probability
        );
        ensure!(
            self.turn_end_ms <= self.hangover_ms,
            "the silence that ends a finished turn ({} ms) must be at most the hangover ({} ms)",
            self.turn_end_ms,
            self.hangover_ms
        );
        let shortest = self.min_speech_ms as f32 / 1000.0;
        ensure!(
            self.max_utterance_s >= shortest && self.max_utterance_s.is_finite(),
            "the maximum utterance length must be at least the minimum speech length ({shortest} s), got {} s",
            self.max_utterance_s
        );
        Ok(())
    }
}

/// Whole frames of `frame_len` samples covering `ms`.
fn frames(ms: u32, frame_len: usize) -> usize {
    (ms as usize * SAMPLE_RATE as usize / 1000).div_ceil(frame_len)
}

/// How a frame sounds to the endpointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Counts toward the silence that ends an utterance.
    Silence,
    /// Keeps an utterance going, but cannot start one alone: a consonant, a trailing syllable.
    Active,
    /// Speech: can start an utterance.
    Speech,
}

/// Judges a 16 kHz stream frame by frame, in order.
pub trait FrameDetector: Send {
    /// Samples per frame.
    fn frame_len(&self) -> usize;
    /// The next frame of the stream (`frame_len` samples); `in_speech` says whether an utterance is
    /// under way.
    fn classify(&mut self, frame: &[f32], in_speech: bool) -> Result<Activity>;
}

/// Hysteresis on a speech probability: speech at `threshold`, active down to 0.15 below it.
pub fn activity_of_probability(probability: f32, threshold: f32) -> Activity {
    if probability >= threshold {
        Activity::Speech
    } else if probability >= threshold - PROBABILITY_HYSTERESIS {
        Activity::Active
    } else {
        Activity::Silence
    }
}

/// What the endpointer found in the audio pushed to it; `S` is the utterance ([`Speech`], or
/// whatever a consumer wraps it in).
#[derive(Debug, Clone, PartialEq)]
pub enum Boundary<S = Speech> {
    /// An utterance began: stream time (s) of its first speech, before the pre-roll.
    Started(f64),
    /// Speech paused for `pause_ms`: the utterance so far, which may yet go on.
    Paused(S),
    /// Speech went on after a pause reported as [`Boundary::Paused`].
    Resumed,
    /// An utterance ended.
    Ended(S),
}

impl<S> Boundary<S> {
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Boundary<T> {
        match self {
            Boundary::Started(at) => Boundary::Started(at),
            Boundary::Paused(s) => Boundary::Paused(f(s)),
            Boundary::Resumed => Boundary::Resumed,
            Boundary::Ended(s) => Boundary::Ended(f(s)),
        }
    }
}

/// One utterance found in the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    /// Stream time (s) where speech started and ended.
    pub start_s: f64,
    pub end_s: f64,
    /// 16 kHz audio from up to the pre-roll before the start to a little after the end.
    pub samples: Vec<f32>,
}

/// Frame energy and voicing.
struct Features {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    autocorrelation: Vec<f32>,
    /// Running sums of squares of the pre-emphasised frame.
    energy_before: Vec<f32>,
}

impl Features {
    fn new() -> Self {
        let mut planner = RealFftPlanner::new();
        let (forward, inverse) = (planner.plan_fft_forward(FFT_LEN), planner.plan_fft_inverse(FFT_LEN));
        Self {
            frame: forward.make_input_vec(),
            spectrum: forward.make_output_vec(),
            autocorrelation: inverse.make_output_vec(),
            energy_before: Vec::with_capacity(FRAME + 1),
            forward,
            inverse,
        }
    }

    /// (energy in dBFS, voicing in [0, 1]) of one frame.
    fn of(&mut self, frame: &[f32]) -> (f32, f32) {
        let power = mean_square(frame);
        let energy_db = if power > 0.0 { (10.0 * power.log10()).max(SILENCE_DB) } else { SILENCE_DB };
        // Pre-emphasis whitens rumble (brown and pink noise), which would otherwise correlate at every lag.
        self.frame.fill(0.0);
        for i in 1..FRAME {
            self.frame[i] = frame[i] - 0.97 * frame[i - 1];
        }
        self.energy_before.clear();
        self.energy_before.push(0.0);
        for i in 0..FRAME {
            let total = self.energy_before[i] + self.frame[i] * self.frame[i];
            self.energy_before.push(total);
        }
        self.forward.process(&mut self.frame, &mut self.spectrum).expect("buffers come from the plan");
        for c in &mut self.spectrum {
            *c = Complex::new(c.norm_sqr(), 0.0);
        }
        self.inverse.process(&mut self.spectrum, &mut self.autocorrelation).expect("buffers come from the plan");
        // Correlation of the frame's first and last `FRAME - lag` samples, normalised by their energies.
        let e = &self.energy_before;
        let voicing = LAGS
            .map(|lag| {
                let energies = (e[FRAME - lag] * (e[FRAME] - e[lag])).sqrt();
                if energies > 0.0 {
                    self.autocorrelation[lag] / FFT_LEN as f32 / energies
                } else {
                    0.0
                }
            })
            .fold(0.0f32, f32::max);
        (energy_db, voicing.min(1.0))
    }
}

/// The fallback detector: energy above an adaptive noise floor, and voicing (see the module docs).
pub struct EnergyDetector {
    config: VadConfig,
    features: Features,
    floor_db: Option<f32>,
}

impl EnergyDetector {
    pub fn new(config: &VadConfig) -> Self {
        Self { config: config.clone(), features: Features::new(), floor_db: None }
    }
}

impl FrameDetector for EnergyDetector {
    fn frame_len(&self) -> usize {
        FRAME
    }

    fn classify(&mut self, frame: &[f32], in_speech: bool) -> Result<Activity> {
        let (energy_db, voicing) = self.features.of(frame);
        let floor = *self.floor_db.get_or_insert(energy_db);
        let loud = energy_db >= self.config.min_level_db && energy_db >= floor + self.config.threshold_db;
        let rise_s = if in_speech { FLOOR_RISE_SPEECH_S } else { FLOOR_RISE_IDLE_S };
        let tau_s = if energy_db < floor { FLOOR_FALL_S } else { rise_s };
        self.floor_db = Some(floor + (energy_db - floor) * (FRAME_S / tau_s).min(1.0));
        Ok(match (loud, voicing >= self.config.min_voicing) {
            (false, _) => Activity::Silence,
            (true, false) => Activity::Active,
            (true, true) => Activity::Speech,
        })
    }
}

enum State {
    Idle {
        /// Consecutive active frames, and how many of them were speech.
        active_run: usize,
        speech_in_run: usize,
    },
    Speech {
        start_frame: u64,
        samples: Vec<f32>,
        /// Frame index just after the last active frame.
        last_active: u64,
        /// The current silence was reported as [`Boundary::Paused`].
        paused: bool,
        /// The words before the current silence read as a finished turn: `turn_end_ms` ends it.
        turn_over: bool,
    },
}

/// Streaming endpointer: feed 16 kHz audio with [`push`](Self::push), collect finished utterances.
pub struct Vad {
    config: VadConfig,
    detector: Box<dyn FrameDetector>,
    frame_len: usize,
    /// Samples that do not fill a frame yet.
    pending: Vec<f32>,
    /// The same samples as the detector hears them.
    pending_detect: Vec<f32>,
    /// The most recent audio: pre-roll plus onset frames.
    recent: VecDeque<f32>,
    recent_len: usize,
    frames_seen: u64,
    state: State,
}

const IDLE: State = State::Idle { active_run: 0, speech_in_run: 0 };

impl Vad {
    /// An endpointer on the energy detector.
    pub fn new(config: VadConfig) -> Result<Self> {
        let detector = Box::new(EnergyDetector::new(&config));
        Self::with_detector(config, detector)
    }

    pub fn with_detector(config: VadConfig, detector: Box<dyn FrameDetector>) -> Result<Self> {
        config.check()?;
        let frame_len = detector.frame_len();
        let keep = (frames(config.pre_roll_ms, frame_len) + frames(config.min_speech_ms, frame_len)) * frame_len;
        Ok(Self {
            config,
            detector,
            frame_len,
            pending: Vec::with_capacity(frame_len),
            pending_detect: Vec::with_capacity(frame_len),
            recent: VecDeque::with_capacity(keep),
            recent_len: keep,
            frames_seen: 0,
            state: IDLE,
        })
    }

    fn frames(&self, ms: u32) -> usize {
        frames(ms, self.frame_len)
    }

    /// The most whole frames that fit in the maximum utterance length.
    fn max_frames(&self) -> u64 {
        let frame_s = self.frame_len as f32 / SAMPLE_RATE as f32;
        ((self.config.max_utterance_s / frame_s + 1e-4).floor() as u64).max(1)
    }

    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Takes more 16 kHz audio; returns what it found, in order. Fails only if the detector does.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Boundary>> {
        self.push_heard(samples, samples)
    }

    /// As [`push`](Self::push), but speech is detected in `detect` while utterances keep `keep`
    /// (the same stretch of audio): the echo canceller's gated output decides when the user
    /// speaks, and its fuller output is what is heard, from the pre-roll on.
    pub fn push_heard(&mut self, detect: &[f32], keep: &[f32]) -> Result<Vec<Boundary>> {
        debug_assert_eq!(detect.len(), keep.len());
        let mut done = Vec::new();
        for (&d, &k) in detect.iter().zip(keep) {
            self.pending.push(k);
            self.pending_detect.push(d);
            if self.pending.len() == self.frame_len {
                let (frame, detect) = (std::mem::take(&mut self.pending), std::mem::take(&mut self.pending_detect));
                done.extend(self.frame(&detect, &frame)?);
                (self.pending, self.pending_detect) = (frame, detect);
                self.pending.clear();
                self.pending_detect.clear();
            }
        }
        Ok(done)
    }

    /// Ends the stream: returns the utterance under way, if any.
    pub fn finish(&mut self) -> Option<Speech> {
        let tail = std::mem::take(&mut self.pending);
        self.pending_detect.clear();
        match std::mem::replace(&mut self.state, IDLE) {
            State::Speech { start_frame, mut samples, last_active, .. } => {
                samples.extend_from_slice(&tail);
                (last_active > start_frame).then(|| self.speech(start_frame, last_active, samples, usize::MAX))
            }
            State::Idle { .. } => None,
        }
    }

    /// The next frame: `detect` is judged, `frame` is kept.
    fn frame(&mut self, detect: &[f32], frame: &[f32]) -> Result<Option<Boundary>> {
        let activity = self.detector.classify(detect, self.in_speech())?;
        let active = activity != Activity::Silence;
        let frame_len = self.frame_len;
        let excess = (self.recent.len() + frame_len).saturating_sub(self.recent_len);
        self.recent.drain(..excess.min(self.recent.len()));
        self.recent.extend(frame);
        let index = self.frames_seen;
        self.frames_seen += 1;

        let (needed, pre_roll, hangover, max_frames) = (
            self.frames(self.config.min_speech_ms),
            self.frames(self.config.pre_roll_ms),
            self.frames(self.config.hangover_ms),
            self.max_frames(),
        );
        let pause = (self.config.pause_ms > 0).then(|| self.frames(self.config.pause_ms));
        let turn_end = self.frames(self.config.turn_end_ms);
        let pad = self.padding();
        match &mut self.state {
            State::Idle { active_run, speech_in_run } => {
                (*active_run, *speech_in_run) = if active {
                    (*active_run + 1, *speech_in_run + usize::from(activity == Activity::Speech))
                } else {
                    (0, 0)
                };
                // Half the frames speech: syllables are short, and consonants between them are not.
                if *active_run >= needed && 2 * *speech_in_run >= needed {
                    let onset = (*active_run).min(needed);
                    let wanted = (pre_roll + onset) * frame_len;
                    let samples = self.recent.iter().skip(self.recent.len().saturating_sub(wanted)).copied().collect();
                    let start_frame = index + 1 - onset as u64;
                    self.state =
                        State::Speech { start_frame, samples, last_active: index + 1, paused: false, turn_over: false };
                    return Ok(Some(Boundary::Started(self.seconds(start_frame))));
                }
                Ok(None)
            }
            State::Speech { start_frame, samples, last_active, paused, turn_over } => {
                samples.extend_from_slice(frame);
                if active {
                    *last_active = index + 1;
                    *turn_over = false;
                    if std::mem::take(paused) {
                        return Ok(Some(Boundary::Resumed));
                    }
                }
                let silent = (index + 1 - *last_active) as usize;
                let too_long = index + 1 - *start_frame >= max_frames;
                if too_long && silent == 0 {
                    // Cut mid-speech and carry straight on: no pre-roll for the next piece, so no word is heard twice.
                    let (start, samples) = (*start_frame, std::mem::take(samples));
                    *start_frame = index + 1;
                    return Ok(Some(Boundary::Ended(self.speech(start, index + 1, samples, 0))));
                }
                let hangover = if *turn_over { turn_end } else { hangover };
                if too_long || silent >= hangover {
                    return Ok(self.end());
                }
                if pause == Some(silent) && !*paused {
                    *paused = true;
                    let (start, end, samples) = (*start_frame, *last_active, samples.clone());
                    return Ok(Some(Boundary::Paused(self.speech(start, end, samples, pad))));
                }
                Ok(None)
            }
        }
    }

    /// The words up to the pause reported with speech ending at `end_s` read as a finished turn:
    /// the silence after them ends the utterance after `turn_end_ms` instead of the whole
    /// hangover. Returns the ended utterance at once if that much silence has passed already. A
    /// cue for a pause that speech has since resumed from is ignored.
    pub fn end_turn_early(&mut self, end_s: f64) -> Option<Boundary> {
        if self.config.turn_end_ms == 0 {
            return None;
        }
        let turn_end = self.frames(self.config.turn_end_ms) as u64;
        let frames_seen = self.frames_seen;
        let end_frame = (end_s * f64::from(SAMPLE_RATE) / self.frame_len as f64).round() as u64;
        match &mut self.state {
            State::Speech { last_active, paused: true, turn_over, .. } if *last_active == end_frame => {
                *turn_over = true;
                if frames_seen - *last_active >= turn_end {
                    self.end()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Silence kept after the end of an utterance (samples).
    fn padding(&self) -> usize {
        self.frames(self.config.pre_roll_ms.min(self.config.hangover_ms)) * self.frame_len
    }

    /// Ends the utterance under way, if any.
    fn end(&mut self) -> Option<Boundary> {
        let State::Speech { start_frame, samples, last_active, .. } = std::mem::replace(&mut self.state, IDLE) else {
            return None;
        };
        // After a cut at the maximum length, the rest may be nothing but this silence.
        (last_active > start_frame)
            .then(|| Boundary::Ended(self.speech(start_frame, last_active, samples, self.padding())))
    }

    /// The utterance from `start` to `end` (frame indices), keeping `pad` samples past the end.
    fn speech(&self, start: u64, end: u64, mut samples: Vec<f32>, pad: usize) -> Speech {
        // `samples` ends at the newest frame; trim the silence after `end` down to `pad`.
        let after_end = (self.frames_seen - end) as usize * self.frame_len;
        let silence = after_end.min(samples.len());
        samples.truncate(samples.len() - silence + silence.min(pad));
        Speech { start_s: self.seconds(start), end_s: self.seconds(end), samples }
    }

    /// Stream time (s) at the start of frame `frame`.
    fn seconds(&self, frame: u64) -> f64 {
        (frame as usize * self.frame_len) as f64 / f64::from(SAMPLE_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f32 = SAMPLE_RATE as f32;

    /// A buzzy 140 Hz "vowel": harmonics with falling amplitude, like voiced speech.
    fn vowel(seconds: f32, amplitude: f32) -> Vec<f32> {
        (0..(seconds * RATE) as usize)
            .map(|i| {
                let t = i as f32 / RATE;
                amplitude
                    * (1..=20).map(|h| (std::f32::consts::TAU * 140.0 * h as f32 * t).sin() / h as f32).sum::<f32>()
                    / 3.0
            })
            .collect()
    }

    fn silence(seconds: f32) -> Vec<f32> {
        vec![0.0; (seconds * RATE) as usize]
    }

    /// Uniform white noise from a fixed-seed xorshift.
    fn noise(seconds: f32, amplitude: f32) -> Vec<f32> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..(seconds * RATE) as usize)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                amplitude * ((x >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            })
            .collect()
    }

    fn run(config: VadConfig, parts: &[Vec<f32>]) -> Vec<Speech> {
        let mut vad = Vad::new(config).unwrap();
        let mut found = Vec::new();
        // Odd-sized chunks, as a sound card would deliver them.
        for chunk in parts.concat().chunks(333) {
            found.extend(vad.push(chunk).unwrap().into_iter().filter_map(|b| match b {
                Boundary::Ended(speech) => Some(speech),
                Boundary::Started(_) | Boundary::Paused(_) | Boundary::Resumed => None,
            }));
        }
        found.extend(vad.finish());
        found
    }

    fn spans(found: &[Speech]) -> Vec<(f64, f64)> {
        found.iter().map(|s| (s.start_s, s.end_s)).collect()
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() <= 0.07
    }

    #[test]
    fn silence_is_not_speech() {
        assert!(run(VadConfig::default(), &[silence(5.0)]).is_empty());
    }

    #[test]
    fn steady_white_noise_is_not_speech() {
        assert!(run(VadConfig::default(), &[noise(6.0, 0.05)]).is_empty());
        // Also when it starts after silence: it is not voiced, so it stays out while the floor learns it.
        assert!(run(VadConfig::default(), &[silence(1.0), noise(6.0, 0.05)]).is_empty());
    }

    #[test]
    fn quiet_sounds_below_the_minimum_level_are_not_speech() {
        assert!(run(VadConfig::default(), &[silence(1.0), vowel(1.0, 0.001), silence(1.0)]).is_empty());
    }

    #[test]
    fn tone_bursts_are_found_where_they_are() {
        let found =
            run(VadConfig::default(), &[silence(1.0), vowel(1.0, 0.3), silence(1.5), vowel(0.6, 0.3), silence(1.0)]);
        let spans = spans(&found);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert!(near(spans[0].0, 1.0) && near(spans[0].1, 2.0), "{spans:?}");
        assert!(near(spans[1].0, 3.5) && near(spans[1].1, 4.1), "{spans:?}");
    }

    #[test]
    fn tones_in_steady_noise_are_found() {
        let mut mixed = [silence(0.5), vowel(1.0, 0.3), silence(1.5), vowel(1.0, 0.3), silence(1.0)].concat();
        for (m, n) in mixed.iter_mut().zip(noise(10.0, 0.02)) {
            *m += n;
        }
        let spans = spans(&run(VadConfig::default(), &[mixed]));
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert!(near(spans[0].0, 0.5) && near(spans[1].0, 3.0), "{spans:?}");
    }

    #[test]
    fn pre_roll_keeps_audio_from_before_the_start() {
        let config = VadConfig { pre_roll_ms: 300, hangover_ms: 300, ..VadConfig::default() };
        let found = run(config, &[silence(1.0), vowel(1.0, 0.3), silence(1.0)]);
        assert_eq!(found.len(), 1);
        let speech = &found[0];
        let lead = speech.samples.iter().position(|s| s.abs() > 1e-3).unwrap();
        // 300 ms is ten 30 ms frames; the tone starts somewhere in the first speech frame.
        assert!((10 * FRAME..11 * FRAME).contains(&lead), "{lead} samples kept before the start");
        // The tail keeps min(pre-roll, hangover) after the end.
        let expected = ((speech.end_s - speech.start_s) * f64::from(SAMPLE_RATE)).round() as usize + 2 * 10 * FRAME;
        assert_eq!(speech.samples.len(), expected);
    }

    #[test]
    fn hangover_bridges_short_pauses_but_not_long_ones() {
        let config = VadConfig { hangover_ms: 500, ..VadConfig::default() };
        let short_pause =
            run(config.clone(), &[silence(0.5), vowel(0.8, 0.3), silence(0.3), vowel(0.8, 0.3), silence(1.0)]);
        assert_eq!(short_pause.len(), 1, "{:?}", spans(&short_pause));
        assert!(near(short_pause[0].end_s, 2.4));
        let long_pause = run(config, &[silence(0.5), vowel(0.8, 0.3), silence(0.8), vowel(0.8, 0.3), silence(1.0)]);
        assert_eq!(long_pause.len(), 2, "{:?}", spans(&long_pause));
    }

    #[test]
    fn pauses_are_reported_before_the_end_and_taken_back_when_speech_resumes() {
        let config = VadConfig { hangover_ms: 500, pause_ms: 150, ..VadConfig::default() };
        let mut vad = Vad::new(config).unwrap();
        let audio = [silence(0.5), vowel(0.8, 0.3), silence(0.3), vowel(0.8, 0.3), silence(1.0)].concat();
        let found: Vec<Boundary> = audio.chunks(333).flat_map(|chunk| vad.push(chunk).unwrap()).collect();
        let kinds: Vec<&str> = found
            .iter()
            .map(|b| match b {
                Boundary::Started(_) => "started",
                Boundary::Paused(_) => "paused",
                Boundary::Resumed => "resumed",
                Boundary::Ended(_) => "ended",
            })
            .collect();
        assert_eq!(kinds, ["started", "paused", "resumed", "paused", "ended"]);
        let (Boundary::Started(onset), Boundary::Paused(first), Boundary::Paused(last), Boundary::Ended(whole)) =
            (&found[0], &found[1], &found[3], &found[4])
        else {
            unreachable!()
        };
        assert!(near(first.end_s, 1.3) && near(whole.end_s, 2.4), "{first:?} {whole:?}");
        assert_eq!(*onset, whole.start_s, "the onset is the utterance's start");
        // The last pause holds the whole utterance: answering it early answers the right question.
        assert_eq!((last.start_s, last.end_s), (whole.start_s, whole.end_s));
        assert_eq!(last.samples[..], whole.samples[..last.samples.len()]);
        assert!(Vad::new(VadConfig { hangover_ms: 300, pause_ms: 300, ..VadConfig::default() }).is_err());
    }

    #[test]
    fn a_finished_turn_ends_after_the_shorter_silence_and_a_stale_cue_changes_nothing() {
        let config = VadConfig { hangover_ms: 600, pause_ms: 150, turn_end_ms: 300, ..VadConfig::default() };
        let audio = [silence(0.5), vowel(0.8, 0.3), silence(0.4), vowel(0.8, 0.3), silence(1.0)].concat();
        // Cues every pause as a finished turn, at once (`late`: false) or only 0.4 s on.
        let cue_every_pause = |late: bool| {
            let mut vad = Vad::new(config.clone()).unwrap();
            let (mut found, mut cue) = (Vec::new(), None::<(f64, usize)>);
            for (i, chunk) in audio.chunks(FRAME).enumerate() {
                if let Some((end_s, _)) = cue.filter(|&(_, at)| at == i) {
                    found.extend(vad.end_turn_early(end_s));
                    cue = None;
                }
                for boundary in vad.push(chunk).unwrap() {
                    if let Boundary::Paused(speech) = &boundary {
                        cue = Some((speech.end_s, i + if late { 14 } else { 1 }));
                    }
                    found.push(boundary);
                }
            }
            found
                .into_iter()
                .filter_map(|b| if let Boundary::Ended(s) = b { Some((s.start_s, s.end_s)) } else { None })
                .collect::<Vec<_>>()
        };
        // At once: the 0.4 s pause is longer than 300 ms, so the cue splits the two vowels.
        let early = cue_every_pause(false);
        assert_eq!(early.len(), 2, "{early:?}");
        assert!(near(early[0].1, 1.3), "{early:?}");
        // 0.4 s on, the second vowel has begun: the cue is for a pause that is over.
        let stale = cue_every_pause(true);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert!(near(stale[0].1, 2.5), "{stale:?}");
        assert!(Vad::new(VadConfig { turn_end_ms: 700, ..config }).is_err());
    }

    #[test]
    fn blips_shorter_than_the_minimum_speech_are_ignored() {
        assert!(run(VadConfig::default(), &[silence(1.0), vowel(0.06, 0.3), silence(1.0)]).is_empty());
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum_length() {
        let config = VadConfig { max_utterance_s: 1.0, ..VadConfig::default() };
        let found = run(config, &[silence(0.5), vowel(3.5, 0.3), silence(1.0)]);
        let spans = spans(&found);
        assert_eq!(spans.len(), 4, "{spans:?}");
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "pieces are contiguous: {spans:?}");
        }
        assert!(spans.iter().all(|(s, e)| e - s <= 1.0 + 1e-9), "{spans:?}");
        assert!(near(spans[3].1, 4.0), "{spans:?}");
    }

    #[test]
    fn a_cut_just_before_the_speech_ends_leaves_no_empty_piece() {
        // 0.99 s is exactly 33 frames: the cut comes as the tone stops.
        let config = VadConfig { max_utterance_s: 0.99, ..VadConfig::default() };
        let spans = spans(&run(config, &[silence(0.48), vowel(0.99, 0.3), silence(1.5)]));
        assert_eq!(spans.len(), 1, "{spans:?}");
    }

    #[test]
    fn speech_still_going_at_the_end_of_the_stream_is_returned() {
        let found = run(VadConfig::default(), &[silence(0.5), vowel(1.0, 0.3)]);
        assert_eq!(found.len(), 1);
        assert!(near(found[0].end_s, 1.5));
    }

    #[test]
    fn bad_thresholds_are_refused() {
        assert!(Vad::new(VadConfig { max_utterance_s: 0.0, ..VadConfig::default() }).is_err());
        assert!(Vad::new(VadConfig { threshold_db: -1.0, ..VadConfig::default() }).is_err());
        assert!(Vad::new(VadConfig { min_voicing: 2.0, ..VadConfig::default() }).is_err());
        assert!(Vad::new(VadConfig { threshold: 0.1, ..VadConfig::default() }).is_err());
    }
}
