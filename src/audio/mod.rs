//! Audio front end: WAV file -> 16 kHz mono f32 -> Whisper log-mel.

#[cfg(feature = "mic")]
pub mod capture;
pub mod echo;
pub mod mel;
pub mod mp3;
#[cfg(feature = "mic")]
pub mod playback;
#[cfg(feature = "mic")]
mod quiet;
pub mod resample;
pub mod vad;
pub mod wav;

pub use mel::{mel_filters, Mel, MelExtractor};
pub use mp3::{looks_like_mp3, read_mp3};
pub use resample::{resample, resample_to_16k, Resampler};
pub use vad::{Speech, Vad, VadConfig};
pub use wav::{read_wav, read_wav_from, write_wav, write_wav_16k, Audio};

/// The sample rate every model in kioku expects.
pub const SAMPLE_RATE: u32 = 16_000;

/// Mean power of a stretch of samples (0 for none).
pub fn mean_square(samples: &[f32]) -> f32 {
    samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32
}
