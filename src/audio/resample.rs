//! Resampling with rubato's synchronous FFT resampler: to 16 kHz for the models, and from the
//! speech synthesizer's rate to a sound card's.

use anyhow::{anyhow, ensure, Result};
use rubato::{FftFixedIn, Resampler as _};

use super::{Audio, SAMPLE_RATE};

/// Highest rate accepted; it bounds the FFT sizes a bogus WAV header could ask for.
const MAX_RATE: u32 = 768_000;

/// Resamples a whole clip to 16 kHz: `round(len * 16000 / rate)` samples, aligned in time
/// with the input. 16 kHz input is returned unchanged.
pub fn resample_to_16k(audio: &Audio) -> Result<Vec<f32>> {
    resample(audio, SAMPLE_RATE)
}

/// Resamples a whole clip to `rate`, as [`resample_to_16k`] does to 16 kHz.
pub fn resample(audio: &Audio, rate: u32) -> Result<Vec<f32>> {
    let mut resampler = Resampler::new(audio.sample_rate, rate)?;
    let mut out = resampler.process(&audio.samples);
    out.extend(resampler.flush());
    Ok(out)
}

/// Streaming mono resampler: feed any number of samples to [`process`](Self::process), then call
/// [`flush`](Self::flush) at the end of a stream (after which it can be reused). To 16 kHz, the
/// concatenated output equals [`resample_to_16k`] of the concatenated input.
pub struct Resampler(Option<Stream>);

struct Stream {
    fft: FftFixedIn<f32>,
    input_rate: u64,
    output_rate: u64,
    /// Input waiting until it fills a chunk.
    pending: Vec<f32>,
    /// Leading output still to drop: the filter delay.
    skip: usize,
    /// Input received and output returned since the stream started.
    n_in: u64,
    n_out: u64,
}

impl Resampler {
    /// From `input_rate` to the models' 16 kHz.
    pub fn to_16k(input_rate: u32) -> Result<Self> {
        Self::new(input_rate, SAMPLE_RATE)
    }

    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self> {
        for rate in [input_rate, output_rate] {
            ensure!(
                (1..=MAX_RATE).contains(&rate),
                "unsupported sample rate {rate} Hz (supported: 1 to {MAX_RATE} Hz)"
            );
        }
        if input_rate == output_rate {
            return Ok(Self(None));
        }
        let g = gcd(input_rate, output_rate);
        let (unit_in, unit_out) = ((input_rate / g) as usize, (output_rate / g) as usize);
        // Blocks of about 20 ms (an even number of units, so that the filter delay, half a
        // block, is a whole number of samples on both sides). Live audio waits for a whole block
        // and then for the delay: from 44.1 kHz to 16 kHz that is 20 + 10 ms, against 40 + 20
        // with the earlier 1024 samples on the longer side, which cost every live answer up to
        // 60 ms after the end of speech. A shorter block is a shorter filter: its cutoff falls
        // from 7.83 to 7.66 kHz there (rubato's `calculate_cutoff`).
        let block_out = output_rate as usize / 50;
        let units = 2 * block_out.div_ceil(2 * unit_out).max(1);
        let fft = FftFixedIn::new(input_rate as usize, output_rate as usize, units * unit_in, 1, 1)
            .map_err(|e| anyhow!("cannot resample from {input_rate} Hz: {e}"))?;
        let skip = fft.output_delay();
        Ok(Self(Some(Stream {
            fft,
            input_rate: input_rate.into(),
            output_rate: output_rate.into(),
            pending: Vec::new(),
            skip,
            n_in: 0,
            n_out: 0,
        })))
    }

    /// Returns the output that is ready; the rest comes with later calls or `flush`.
    pub fn process(&mut self, input: &[f32]) -> Vec<f32> {
        let Some(s) = &mut self.0 else {
            return input.to_vec();
        };
        s.pending.extend_from_slice(input);
        s.n_in += input.len() as u64;
        let chunk = s.fft.input_frames_next();
        let mut out = Vec::new();
        let mut used = 0;
        while s.pending.len() - used >= chunk {
            s.run(used, &mut out);
            used += chunk;
        }
        s.pending.drain(..used);
        out
    }

    /// Ends the stream: returns the remaining output and resets for a new stream.
    pub fn flush(&mut self) -> Vec<f32> {
        let Some(s) = &mut self.0 else {
            return Vec::new();
        };
        let total = ((s.n_in * s.output_rate + s.input_rate / 2) / s.input_rate) as usize;
        let wanted = total - s.n_out as usize;
        let chunk = s.fft.input_frames_next();
        let mut out = Vec::new();
        // Push zeros through until the delayed tail of the real input has come out.
        while out.len() < wanted {
            s.pending.resize(chunk, 0.0);
            s.run(0, &mut out);
            s.pending.clear();
        }
        out.truncate(wanted);
        s.fft.reset();
        s.skip = s.fft.output_delay();
        (s.n_in, s.n_out) = (0, 0);
        out
    }
}

impl Stream {
    /// Resamples one chunk of `pending` starting at `start`, appending to `out`.
    fn run(&mut self, start: usize, out: &mut Vec<f32>) {
        let chunk = self.fft.input_frames_next();
        let input = [&self.pending[start..start + chunk]];
        let resampled = self.fft.process(&input, None).expect("input is exactly one chunk");
        let fresh = resampled[0].get(self.skip..).unwrap_or_default();
        self.skip -= resampled[0].len().min(self.skip);
        self.n_out += fresh.len() as u64;
        out.extend_from_slice(fresh);
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
