//! Kioku's own voice, kept out of what it hears. While an answer is spoken, the microphone picks up
//! the speaker too; left alone, that echo would start an utterance of its own. [`Playback`] records
//! what the speaker was given, at 16 kHz on the wall clock, and can cut it short (a barge-in).
//! [`EchoCanceller`] removes it from the microphone's stream: it finds the delay from speaker to
//! microphone by cross-correlation, then follows the echo path with an NLMS adaptive filter.
//!
//! What the filter leaves still sounds like speech to a voice detector, only 25 dB quieter. So the
//! canceller gives two streams ([`Cancelled`]): the *gated* one, in which only blocks the filter
//! cannot explain and that are louder than the echo could be (the user talking) pass, with 100 ms
//! after them, is what the voice detector judges; the *residual*, the filter's whole output, is
//! what an utterance keeps, so the user's first syllables and pre-roll are not lost to the gate.
//! Until the filter has learnt the path, the gate stays shut while the speaker plays: kioku never
//! hears itself, at the price that the very first answer can only be talked over once the filter
//! has converged (a few hundred ms of speech after the echo first reaches the microphone). An
//! answer that the microphone has not heard at all for longer than any echo path takes
//! (headphones) is neither gated nor subtracted from then on, whatever delay was learnt before.
//! The delay and the filter are kept from one answer to the next.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::{mean_square, resample, Audio, SAMPLE_RATE};

/// Audio kept on the playback timeline behind the present, for a reader that lags.
const KEEP_PLAYED_S: u64 = 10;

/// What stops a sink's queued audio; told how much of it was still unplayed.
pub type SinkStopper = Box<dyn Fn(Duration) + Send>;

/// The speaker's timeline: every sample given to the sink, at the instant it is due to play (16 kHz
/// samples counted from an origin). Shared by the speech thread, which schedules audio, and the
/// capture thread, which reads it back as the echo reference and cuts it at a barge-in.
pub struct Playback {
    origin: Instant,
    /// Bumped by every barge-in; answers begun before it stay silent.
    epoch: AtomicU64,
    timeline: Mutex<Timeline>,
}

struct Timeline {
    /// Index of `samples[0]`.
    start: u64,
    samples: VecDeque<f32>,
    stop_sink: Option<SinkStopper>,
}

impl Timeline {
    fn end(&self) -> u64 {
        self.start + self.samples.len() as u64
    }

    /// Drops the samples due before `index`.
    fn forget_before(&mut self, index: u64) {
        let old = index.saturating_sub(self.start).min(self.samples.len() as u64);
        self.samples.drain(..old as usize);
        self.start += old;
    }
}

impl Default for Playback {
    fn default() -> Self {
        Self::new()
    }
}

impl Playback {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            epoch: AtomicU64::new(0),
            timeline: Mutex::new(Timeline { start: 0, samples: VecDeque::new(), stop_sink: None }),
        }
    }

    fn timeline(&self) -> std::sync::MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The timeline index of `at` (instants before the origin map to 0).
    pub fn index_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_secs_f64() * f64::from(SAMPLE_RATE)) as u64
    }

    /// The number of barge-ins so far.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Tells the timeline how to stop the sink's queue at a barge-in.
    pub fn set_sink_stopper(&self, stop: SinkStopper) {
        self.timeline().stop_sink = Some(stop);
    }

    /// Plays `audio` for an answer begun at `epoch`, after what is already playing (or now): hands
    /// it to the sink with `play` and records it. An answer that a barge-in has cut since is not
    /// played; returns whether this one was.
    pub fn play(&self, epoch: u64, audio: &Audio, play: impl FnOnce(&Audio) -> Result<()>) -> Result<bool> {
        let samples = resample(audio, SAMPLE_RATE)?;
        let mut timeline = self.timeline();
        if epoch != self.epoch() {
            return Ok(false);
        }
        play(audio)?;
        let now = self.index_at(Instant::now());
        let gap = now.saturating_sub(timeline.end());
        timeline.samples.extend(std::iter::repeat_n(0.0, gap as usize).chain(samples));
        timeline.forget_before(now.saturating_sub(KEEP_PLAYED_S * u64::from(SAMPLE_RATE)));
        Ok(true)
    }

    /// Whether audio is still due to play.
    pub fn is_playing(&self) -> bool {
        self.timeline().end() > self.index_at(Instant::now())
    }

    /// A barge-in: drops what has not played yet, stops the sink, and silences every answer begun so
    /// far. Returns whether anything was still to play.
    pub fn interrupt(&self) -> bool {
        let mut timeline = self.timeline();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let now = self.index_at(Instant::now());
        let unplayed = timeline.end().saturating_sub(now.max(timeline.start));
        let keep = timeline.samples.len() - unplayed as usize;
        timeline.samples.truncate(keep);
        if let Some(stop) = &timeline.stop_sink {
            stop(Duration::from_secs_f64(unplayed as f64 / f64::from(SAMPLE_RATE)));
        }
        unplayed > 0
    }

    /// The `len` samples due from index `from` (zeros where nothing plays). Audio before `from` is
    /// forgotten: the one reader reads forward.
    pub fn reference(&self, from: u64, len: usize) -> Vec<f32> {
        let mut timeline = self.timeline();
        let mut out = vec![0.0; len];
        for (i, slot) in out.iter_mut().enumerate() {
            let index = from + i as u64;
            if index >= timeline.start {
                if let Some(&sample) = timeline.samples.get((index - timeline.start) as usize) {
                    *slot = sample;
                }
            }
        }
        timeline.forget_before(from);
        out
    }
}

/// Filter length: 32 ms of echo path (the direct sound and the early reflections of a room).
const TAPS: usize = 512;
/// Taps kept before the estimated delay, in case the echo comes a little earlier.
const LEAD: usize = 48;
/// Longest speaker-to-microphone delay searched: 750 ms covers sound servers and Bluetooth.
const MAX_DELAY: usize = 12_000;
/// Microphone audio correlated against the reference to find the delay (0.5 s), and how often.
const WINDOW: usize = 8_000;
const ESTIMATE_EVERY: usize = 4_000;
const FFT_LEN: usize = 32_768;
/// A delay is believed when its correlation peak stands this far above the others' RMS.
const PEAK_OVER_RMS: f32 = 8.0;
/// NLMS step size.
const STEP: f32 = 0.5;
/// Blocks over which echo suppression is judged: 10 ms.
const BLOCK: usize = 160;
/// Converged once the echo is this much weaker in the output than in the input, on average.
const CONVERGED_DB: f32 = 12.0;
/// Once converged, a block suppressed by less than this has the user in it: the filter holds still
/// (otherwise it would learn to cancel the user), and the block passes.
const DOUBLE_TALK_DB: f32 = 6.0;
/// ...and the microphone is this much louder than the echo could be. Through a sound server whose
/// latency drifts, the filter's suppression dips to 5 dB for moments; the echo's expected level
/// keeps those moments from passing as the user.
const NEAR_END_OVER_ECHO_DB: f32 = 3.0;
/// Reference around the delay whose level predicts the echo's: ±30 ms.
const ECHO_LEVEL_SPAN: usize = 480;
/// Blocks passed after the last one with the user in it: the quieter ends of words.
const NEAR_END_HOLD: usize = 10;
/// Reference quieter than this (mean square) is no echo source.
const QUIET: f32 = 1e-7;

/// Removes the played audio from the microphone's 16 kHz stream.
pub struct EchoCanceller {
    /// Recent reference, oldest first; its last sample is the one due with the newest mic sample.
    reference: Vec<f32>,
    /// Recent microphone audio, for the delay search.
    mic: Vec<f32>,
    /// Speaker-to-microphone delay (samples), once found.
    delay: Option<usize>,
    /// Filter over reference lags `delay - LEAD ..`, oldest lag last in time order (see `cancel_block`).
    weights: Vec<f32>,
    since_estimate: usize,
    /// Samples since the reference last had sound.
    since_reference: usize,
    /// Smoothed echo suppression (dB) on blocks with reference sound.
    suppression_db: f32,
    converged: bool,
    /// Echo level at the microphone over reference level around the delay (dB), learnt on blocks
    /// the filter cancels well.
    echo_gain_db: Option<f32>,
    /// Blocks still to pass since the user was last heard over the echo.
    near_end_hold: usize,
    /// The user talked over an answer: everything the filter leaves passes until kioku speaks
    /// again, so the new question reaches the endpointer whole.
    user_has_floor: Option<UserFloor>,
    /// The latest block was held back.
    gate_closed: bool,
    /// The quietest block heard while no echo was possible since the last answer began (mean
    /// square), and that of the stretch before the current answer: the room without kioku.
    idle_floor: f32,
    floor: f32,
    /// Samples the microphone has stayed at the room's floor while echo was possible in this answer.
    quiet_run: usize,
    /// This answer made no sound at the microphone for longer than any echo path takes
    /// (headphones, a muted speaker): nothing is gated.
    no_echo_path: bool,
    fft: Fft,
}

/// The microphone's audio after the echo canceller.
pub struct Cancelled {
    /// What may be taken for the user: silence wherever it could be kioku's echo.
    pub gated: Vec<f32>,
    /// The filter's output: the echo taken away as well as the filter can, nothing held back.
    pub residual: Vec<f32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UserFloor {
    /// The reference has not yet stopped since the barge-in (the part played before it).
    SpeakerStopping,
    SpeakerStopped,
}

struct Fft {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl Default for EchoCanceller {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoCanceller {
    pub fn new() -> Self {
        let mut planner = RealFftPlanner::new();
        Self {
            reference: Vec::new(),
            mic: Vec::new(),
            delay: None,
            weights: vec![0.0; TAPS],
            since_estimate: 0,
            since_reference: usize::MAX / 2,
            suppression_db: 0.0,
            converged: false,
            echo_gain_db: None,
            near_end_hold: 0,
            user_has_floor: None,
            gate_closed: false,
            idle_floor: f32::INFINITY,
            floor: 0.0,
            quiet_run: 0,
            no_echo_path: false,
            fft: Fft { forward: planner.plan_fft_forward(FFT_LEN), inverse: planner.plan_fft_inverse(FFT_LEN) },
        }
    }

    /// The speaker-to-microphone delay found so far, in samples.
    pub fn delay(&self) -> Option<usize> {
        self.delay
    }

    /// Whether the filter has learnt the echo path.
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// The user has talked over the answer, which was stopped: from now until kioku speaks again,
    /// the filter's output passes ungated.
    pub fn give_user_the_floor(&mut self) {
        self.user_has_floor = Some(UserFloor::SpeakerStopping);
    }

    /// Takes microphone audio and the reference due with it (same length); returns the microphone
    /// without the echo, gated: while the speaker may be heard, only what the filter cannot
    /// explain passes (silence until the filter has learnt the path).
    pub fn process(&mut self, mic: &[f32], reference: &[f32]) -> Vec<f32> {
        self.process_both(mic, reference).gated
    }

    /// As [`process`](Self::process), with the filter's output before the gate as well.
    pub fn process_both(&mut self, mic: &[f32], reference: &[f32]) -> Cancelled {
        debug_assert_eq!(mic.len(), reference.len());
        let mut out = Cancelled { gated: Vec::with_capacity(mic.len()), residual: Vec::with_capacity(mic.len()) };
        for (mic, reference) in mic.chunks(BLOCK).zip(reference.chunks(BLOCK)) {
            let residual = self.block(mic, reference);
            let open = !self.gate_closed;
            out.gated.extend(residual.iter().map(|&s| if open { s } else { 0.0 }));
            out.residual.extend(residual);
        }
        out
    }

    /// One block; returns the filter's output and sets `gate_closed`.
    fn block(&mut self, mic: &[f32], reference: &[f32]) -> Vec<f32> {
        self.reference.extend_from_slice(reference);
        self.mic.extend_from_slice(mic);
        let history = MAX_DELAY + TAPS + WINDOW;
        for buffer in [&mut self.reference, &mut self.mic] {
            if buffer.len() > 2 * history {
                buffer.drain(..buffer.len() - history);
            }
        }
        let sounding = mean_square(reference) > QUIET;
        self.user_has_floor = match (self.user_has_floor, sounding) {
            (Some(UserFloor::SpeakerStopping), false) => Some(UserFloor::SpeakerStopped),
            (Some(UserFloor::SpeakerStopped), true) => None,
            (floor, _) => floor,
        };
        let mic_power = mean_square(mic);
        if sounding && self.since_reference >= MAX_DELAY + TAPS {
            // A new answer: the path may have changed since the last one (a sound server settling
            // its latency moved it by 150 ms between two answers), so the filter proves itself
            // again before the microphone opens; with the same path that takes about 50 ms.
            self.unconverge();
            (self.floor, self.idle_floor) = (self.idle_floor, f32::INFINITY);
            (self.quiet_run, self.no_echo_path) = (0, false);
        }
        self.since_reference = if sounding { 0 } else { self.since_reference + reference.len() };
        self.since_estimate += mic.len();
        if sounding && self.since_estimate >= ESTIMATE_EVERY {
            self.since_estimate = 0;
            if let Some(delay) = self.estimate_delay() {
                if self.delay.is_none() {
                    // The first echo found: the quiet before it was the path's delay, not no path.
                    (self.quiet_run, self.no_echo_path) = (0, false);
                }
                self.move_to(delay);
            }
        }
        let echo_possible = self.since_reference < MAX_DELAY + TAPS;
        if !echo_possible {
            self.idle_floor = self.idle_floor.min(mic_power);
        }
        // At the room's floor (within 6 dB) all along, for longer than the longest echo delay
        // since the answer began: this answer has no echo to learn, whatever delay was learnt
        // before (headphones after a speaker, or a "delay" found in two voices that are not an
        // echo: through PulseAudio with no path from speaker to microphone, a question spoken over
        // an answer once gave 5 samples, and every later question was muted while answers played).
        // Before any quiet stretch has been heard the floor is unknown (infinite): without a
        // delay, silence from the echo path for that long is the answer; with one, it proves nothing.
        let at_floor = mic_power <= QUIET.max(4.0 * self.floor) && (self.delay.is_none() || self.floor.is_finite());
        self.quiet_run = if echo_possible && at_floor { self.quiet_run + mic.len() } else { 0 };
        self.no_echo_path |= self.quiet_run >= MAX_DELAY;
        let out = match self.delay {
            Some(delay) => self.through_path(mic, delay, mic_power, echo_possible),
            None => mic.to_vec(),
        };
        // Without a delay the filter has never converged, so only the first three terms count.
        self.gate_closed = echo_possible
            && self.user_has_floor.is_none()
            && !self.no_echo_path
            && (!self.converged || self.near_end_hold == 0);
        out
    }

    /// One block through the echo path at `delay`: the filter's output, learning while only the
    /// echo is heard, and the double-talk hold updated.
    fn through_path(&mut self, mic: &[f32], delay: usize, mic_power: f32, echo_possible: bool) -> Vec<f32> {
        let frozen = self.cancel_block(mic, delay, false);
        let out_power = mean_square(&frozen);
        let block_db = 10.0 * (mic_power.max(1e-12) / out_power.max(1e-12)).log10();
        let heard = mic_power > QUIET;
        let reference_db = self.reference_level_db(delay, mic.len());
        let mic_db = 10.0 * mic_power.max(1e-12).log10();
        let louder_than_echo =
            self.echo_gain_db.is_none_or(|gain| mic_db > reference_db + gain + NEAR_END_OVER_ECHO_DB);
        let double_talk = self.converged && heard && block_db < DOUBLE_TALK_DB && louder_than_echo;
        if heard && block_db >= CONVERGED_DB && reference_db > 10.0 * QUIET.log10() {
            // The filter explains what the microphone hears: there is an echo after all.
            self.no_echo_path = false;
            let gain = mic_db - reference_db;
            self.echo_gain_db = Some(self.echo_gain_db.map_or(gain, |old| 0.95 * old + 0.05 * gain));
        }
        // While the user has the floor, or is all the microphone hears, the filter holds still:
        // it would learn the user's voice.
        let adapt = echo_possible && !double_talk && heard && self.user_has_floor.is_none() && !self.no_echo_path;
        let out = if adapt {
            self.cancel_block(mic, delay, true)
        } else if self.no_echo_path || block_db < 0.0 {
            // No echo to take away, or the filter adds more than it takes away (the echo path
            // went silent): it must not play the reference back into the stream.
            mic.to_vec()
        } else {
            frozen
        };
        if adapt {
            self.suppression_db = 0.9 * self.suppression_db + 0.1 * block_db;
            self.converged |= self.suppression_db >= CONVERGED_DB;
        }
        self.near_end_hold = if double_talk { NEAR_END_HOLD } else { self.near_end_hold.saturating_sub(1) };
        out
    }

    /// The newest `mic.len()` samples with the filtered reference taken away; with `adapt`, the
    /// filter learns from each sample as it goes.
    fn cancel_block(&mut self, mic: &[f32], delay: usize, adapt: bool) -> Vec<f32> {
        let lag_start = delay.saturating_sub(LEAD);
        let newest = self.reference.len();
        let mut out = Vec::with_capacity(mic.len());
        for (i, &m) in mic.iter().enumerate() {
            // The reference sample due with this mic sample is at `newest - mic.len() + i`.
            let now = newest - mic.len() + i + 1;
            let Some(first) = now.checked_sub(lag_start + TAPS) else {
                out.push(m);
                continue;
            };
            let window = &self.reference[first..now - lag_start];
            let echo: f32 = window.iter().zip(&self.weights).map(|(x, w)| x * w).sum();
            let error = m - echo;
            if adapt {
                let energy: f32 = window.iter().map(|x| x * x).sum();
                let gain = STEP * error / (energy + 1e-6);
                for (w, x) in self.weights.iter_mut().zip(window) {
                    *w += gain * x;
                }
            }
            out.push(error);
        }
        out
    }

    /// Adopts a new delay: the filter slides along, so what it learnt still fits.
    fn move_to(&mut self, delay: usize) {
        let Some(old) = self.delay else {
            self.delay = Some(delay);
            return;
        };
        let (old_start, new_start) = (old.saturating_sub(LEAD), delay.saturating_sub(LEAD));
        if old_start.abs_diff(new_start) <= LEAD / 2 {
            return;
        }
        if old_start.abs_diff(new_start) >= TAPS / 2 {
            self.unconverge();
        }
        // Weight k multiplies lag `start + TAPS - 1 - k`: a later start moves taps toward the front.
        let mut moved = vec![0.0; TAPS];
        for (k, &w) in self.weights.iter().enumerate() {
            let lag = old_start + TAPS - 1 - k;
            if let Some(j) = (new_start + TAPS - 1).checked_sub(lag).filter(|&j| j < TAPS && lag >= new_start) {
                moved[j] = w;
            }
        }
        self.weights = moved;
        self.delay = Some(delay);
    }

    /// Level (dB) of the reference around `delay` for the newest `len` samples.
    fn reference_level_db(&self, delay: usize, len: usize) -> f32 {
        let newest = self.reference.len();
        let end = newest.saturating_sub(delay) + ECHO_LEVEL_SPAN;
        let start = newest.saturating_sub(delay + len + ECHO_LEVEL_SPAN);
        10.0 * mean_square(&self.reference[start..end.min(newest)]).max(1e-12).log10()
    }

    /// Mutes the microphone again (while echo is possible) until the filter suppresses it.
    fn unconverge(&mut self) {
        self.converged = false;
        self.suppression_db = 0.0;
    }

    /// The lag at which the microphone best matches the reference (GCC-PHAT), if it is clear.
    fn estimate_delay(&mut self) -> Option<usize> {
        let reference_len = WINDOW + MAX_DELAY;
        if self.mic.len() < WINDOW || self.reference.len() < reference_len {
            return None;
        }
        let mic = &self.mic[self.mic.len() - WINDOW..];
        let reference = &self.reference[self.reference.len() - reference_len..];
        if mean_square(mic) <= QUIET {
            return None;
        }
        let spectrum = |fft: &Arc<dyn RealToComplex<f32>>, signal: &[f32]| {
            let mut input = vec![0.0; FFT_LEN];
            input[..signal.len()].copy_from_slice(signal);
            let mut output = fft.make_output_vec();
            fft.process(&mut input, &mut output).expect("FFT sizes match");
            output
        };
        let (r, m) = (spectrum(&self.fft.forward, reference), spectrum(&self.fft.forward, mic));
        let mut cross: Vec<Complex<f32>> = r
            .iter()
            .zip(&m)
            .map(|(r, m)| {
                let c = r * m.conj();
                c / c.norm().max(1e-12)
            })
            .collect();
        let mut correlation = vec![0.0; FFT_LEN];
        self.fft.inverse.process(&mut cross, &mut correlation).expect("FFT sizes match");
        // correlation[k] = sum_i reference[i + k] * mic[i]; mic[i] lines up with
        // reference[i + MAX_DELAY] at zero delay, so delay d sits at k = MAX_DELAY - d.
        let searched = &correlation[..=MAX_DELAY];
        let (k, peak) = searched.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        let rms = mean_square(searched).sqrt();
        (*peak > PEAK_OVER_RMS * rms).then_some(MAX_DELAY - k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Speech-like test signal: noise shaped into syllables of 120 ms with gaps.
    fn babble(seconds: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = (seconds * SAMPLE_RATE as f32) as usize;
        let mut previous = 0.0;
        (0..n)
            .map(|i| {
                let syllable = (i / 1920) % 3 != 2;
                let envelope = if syllable { (std::f32::consts::PI * (i % 1920) as f32 / 1920.0).sin() } else { 0.0 };
                // A little low-pass, as voices are.
                previous = 0.6 * previous + 0.4 * rng.random_range(-1.0f32..1.0);
                0.3 * envelope * previous
            })
            .collect()
    }

    /// The microphone: the reference delayed by `delay` samples at `gain`, plus `near`.
    fn leak(reference: &[f32], delay: usize, gain: f32, near: &[f32]) -> Vec<f32> {
        (0..reference.len())
            .map(|i| gain * i.checked_sub(delay).map_or(0.0, |j| reference[j]) + near.get(i).copied().unwrap_or(0.0))
            .collect()
    }

    fn run(canceller: &mut EchoCanceller, mic: &[f32], reference: &[f32]) -> Vec<f32> {
        // In 10 ms chunks, as capture delivers them.
        mic.chunks(160).zip(reference.chunks(160)).flat_map(|(m, r)| canceller.process(m, r)).collect()
    }

    fn db(signal: &[f32]) -> f32 {
        10.0 * mean_square(signal).max(1e-12).log10()
    }

    #[test]
    fn a_delayed_echo_is_found_and_cancelled() {
        let reference = babble(4.0, 1);
        let mic = leak(&reference, 3_000, 0.4, &[]);
        let mut canceller = EchoCanceller::new();
        let out = run(&mut canceller, &mic, &reference);
        assert_eq!(canceller.delay(), Some(3_000));
        assert!(canceller.converged());
        let tail = 2 * SAMPLE_RATE as usize..;
        let suppression = db(&mic[tail.clone()]) - db(&out[tail]);
        assert!(suppression > 30.0, "echo suppressed by {suppression:.1} dB");
    }

    #[test]
    fn speech_over_the_echo_comes_through_and_is_not_learnt() {
        let reference = babble(5.0, 2);
        let near_start = 3 * SAMPLE_RATE as usize;
        let mut near = vec![0.0; near_start];
        near.extend(babble(2.0, 3).iter().map(|s| 1.5 * s));
        let mic = leak(&reference, 1_200, 0.5, &near);
        let mut canceller = EchoCanceller::new();
        let out = run(&mut canceller, &mic, &reference);
        let (out, near) = (&out[near_start..], &near[near_start..mic.len()]);
        let residual: Vec<f32> = out.iter().zip(near).map(|(o, n)| o - n).collect();
        let kept = db(near) - db(&residual);
        assert!(kept > 15.0, "the user's voice comes through with the echo {kept:.1} dB below it");
    }

    #[test]
    fn without_a_reference_the_microphone_passes_unchanged() {
        let mic = babble(1.0, 4);
        let out = run(&mut EchoCanceller::new(), &mic, &vec![0.0; mic.len()]);
        assert_eq!(out, mic);
    }

    #[test]
    fn the_microphone_is_muted_until_the_echo_path_is_learnt() {
        let reference = babble(0.3, 5);
        let mic = leak(&reference, 800, 0.5, &[]);
        let out = run(&mut EchoCanceller::new(), &mic, &reference);
        assert!(out.iter().all(|&s| s == 0.0));
    }

    #[test]
    fn without_an_echo_the_microphone_opens_once_the_longest_delay_has_passed() {
        // Headphones: kioku speaks, nothing of it reaches the microphone, which hears a quiet room
        // (-60 dBFS) and then, one second in, the user.
        let reference = [vec![0.0; 8_000], babble(3.0, 6)].concat();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let room: Vec<f32> = (0..4 * SAMPLE_RATE as usize).map(|_| rng.random_range(-0.002f32..0.002)).collect();
        let user_from = 24_000;
        let near: Vec<f32> = room
            .iter()
            .enumerate()
            .map(|(i, r)| r + i.checked_sub(user_from).map_or(0.0, |j| babble(2.0, 8).get(j).copied().unwrap_or(0.0)))
            .collect();
        let out = run(&mut EchoCanceller::new(), &near[..reference.len()], &reference);
        let first_open = out[8_000..].iter().position(|&s| s != 0.0).map(|i| i + 8_000);
        assert!(
            first_open >= Some(8_000 + MAX_DELAY - BLOCK),
            "muted while an echo could still come: open at {first_open:?}"
        );
        assert_eq!(out[user_from..], near[user_from..reference.len()], "the user passes");
    }

    #[test]
    fn headphones_after_a_speaker_let_the_user_through_once_the_longest_delay_has_passed() {
        // The first answer plays through a speaker and its echo path is learnt; the second plays
        // into headphones, and the user talks one second into it.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut room = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.002f32..0.002)).collect() };
        let speaker = [vec![0.0; 8_000], babble(3.0, 12), vec![0.0; 16_000]].concat();
        let heard = leak(&speaker, 1_200, 0.5, &room(speaker.len()));
        let mut canceller = EchoCanceller::new();
        run(&mut canceller, &heard, &speaker);
        assert_eq!(canceller.delay(), Some(1_200));

        let headphones = babble(3.0, 13);
        let user_from = 16_000;
        let near: Vec<f32> = room(headphones.len())
            .iter()
            .enumerate()
            .map(|(i, r)| r + i.checked_sub(user_from).map_or(0.0, |j| babble(2.0, 14).get(j).copied().unwrap_or(0.0)))
            .collect();
        let out = run(&mut canceller, &near, &headphones);
        assert!(out[..MAX_DELAY - BLOCK].iter().all(|&s| s == 0.0), "muted while an echo could still come");
        assert_eq!(out[user_from..], near[user_from..], "the user passes");
    }

    #[test]
    fn playback_is_cut_at_a_barge_in_and_later_answers_play() {
        let playback = Playback::new();
        let stopped = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&stopped);
        playback.set_sink_stopper(Box::new(move |unplayed| *seen.lock().unwrap() = Some(unplayed)));
        let second = Audio { samples: vec![0.5; 16_000], sample_rate: SAMPLE_RATE };
        assert!(playback.play(0, &second, |_| Ok(())).unwrap());
        assert!(playback.is_playing());
        assert!(playback.interrupt());
        assert!(!playback.is_playing());
        let unplayed = stopped.lock().unwrap().expect("the sink was stopped");
        assert!(unplayed > Duration::from_millis(900), "{unplayed:?}");
        // The interrupted answer stays silent; the next one plays.
        assert!(!playback.play(0, &second, |_| panic!("not played")).unwrap());
        assert!(playback.play(playback.epoch(), &second, |_| Ok(())).unwrap());
        let now = playback.index_at(Instant::now());
        assert!(playback.reference(now, 160).iter().all(|&s| s == 0.5));
    }
}
