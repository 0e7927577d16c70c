//! Whisper log-mel spectrogram (openai/whisper `log_mel_spectrogram`), without the 30 s padding.

use std::f64::consts::PI;
use std::sync::Arc;

use anyhow::Result;
use candle_core::{Device, Tensor};
use realfft::{RealFftPlanner, RealToComplex};

use super::SAMPLE_RATE;

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;

/// A log-mel spectrogram, row-major `[n_mels, n_frames]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mel {
    pub data: Vec<f32>,
    pub n_mels: usize,
    pub n_frames: usize,
}

impl Mel {
    /// The encoder input, shape `(1, n_mels, n_frames)`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.data, (1, self.n_mels, self.n_frames), device)?)
    }
}

/// Computes Whisper log-mels of 16 kHz audio; build once, reuse for every clip.
pub struct MelExtractor {
    n_mels: usize,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    /// Per mel band: its first FFT bin and the weights of its non-zero run of bins.
    filters: Vec<(usize, Vec<f32>)>,
}

impl MelExtractor {
    /// `n_mels` is 80 for most Whisper models, 128 for large-v3.
    pub fn new(n_mels: usize) -> Self {
        let filters = mel_filters(n_mels, N_FFT, SAMPLE_RATE)
            .chunks(N_FFT / 2 + 1)
            .map(|row| {
                let start = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |i| i + 1);
                (start, row[start..end].to_vec())
            })
            .collect();
        // Periodic Hann, as torch.hann_window(N_FFT).
        let window = (0..N_FFT).map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / N_FFT as f64).cos()) as f32).collect();
        let fft = RealFftPlanner::new().plan_fft_forward(N_FFT);
        Self { n_mels, window, fft, filters }
    }

    /// One frame per full hop: `samples.len() / 160` frames (torch.stft with center=True gives
    /// one more, which Whisper drops).
    pub fn compute(&self, samples: &[f32]) -> Mel {
        let n_frames = samples.len() / HOP_LENGTH;
        let mut data = vec![0f32; self.n_mels * n_frames];
        if n_frames > 0 {
            let pad = (N_FFT / 2) as isize;
            let padded: Vec<f32> =
                (0..samples.len() + N_FFT).map(|j| samples[reflect(j as isize - pad, samples.len())]).collect();
            let mut frame = self.fft.make_input_vec();
            let mut spectrum = self.fft.make_output_vec();
            let mut scratch = self.fft.make_scratch_vec();
            let mut power = vec![0f32; spectrum.len()];
            for t in 0..n_frames {
                let start = t * HOP_LENGTH;
                for ((x, s), w) in frame.iter_mut().zip(&padded[start..]).zip(&self.window) {
                    *x = s * w;
                }
                self.fft
                    .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                    .expect("buffers come from the plan");
                for (p, c) in power.iter_mut().zip(&spectrum) {
                    *p = c.norm_sqr();
                }
                for (m, (first, weights)) in self.filters.iter().enumerate() {
                    let e: f32 = weights.iter().zip(&power[*first..]).map(|(w, p)| w * p).sum();
                    data[m * n_frames + t] = e.max(1e-10).log10();
                }
            }
        }
        // Whisper's dynamic range: 8 decades below the loudest value, then scaled to about [-1, 1].
        let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in &mut data {
            *x = (x.max(max - 8.0) + 4.0) / 4.0;
        }
        Mel { data, n_mels: self.n_mels, n_frames }
    }
}

/// Index of sample `i` of a length-`n` signal mirrored at both ends without repeating the
/// edge sample (torch/numpy "reflect"); keeps mirroring for clips shorter than the padding.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period);
    (if i < n as isize { i } else { period - i }) as usize
}

/// `librosa.filters.mel(sr, n_fft, n_mels)` with its defaults (Slaney mel scale, `htk=False`,
/// `norm='slaney'`, fmin 0, fmax sr/2), as Whisper's filters were made. Row-major
/// `[n_mels, n_fft / 2 + 1]`, computed in f64.
pub fn mel_filters(n_mels: usize, n_fft: usize, sample_rate: u32) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let edges: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut out = Vec::with_capacity(n_mels * (n_fft / 2 + 1));
    for band in edges.windows(3) {
        let (left, center, right) = (band[0], band[1], band[2]);
        let norm = 2.0 / (right - left); // Slaney: equal area per band
        for k in 0..=n_fft / 2 {
            let f = k as f64 * sr / n_fft as f64;
            let w = ((f - left) / (center - left)).min((right - f) / (right - center));
            out.push((w.max(0.0) * norm) as f32);
        }
    }
    out
}

// Slaney's mel scale: linear below 1 kHz, logarithmic above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz < MIN_LOG_HZ {
        hz / F_SP
    } else {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel < MIN_LOG_MEL {
        mel * F_SP
    } else {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    }
}
