//! WAV decoding to mono f32, and atomic 16 kHz WAV writing.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::SAMPLE_RATE;
use crate::atomic;

/// Mono audio, samples nominally in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Reads a PCM (8/16/24/32-bit) or 32-bit float WAV file of any rate, averaging channels to mono.
pub fn read_wav(path: &Path) -> Result<Audio> {
    let file = File::open(path).map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
    read_wav_from(BufReader::new(file), &path.display().to_string())
}

/// Like [`read_wav`] for any byte stream (e.g. `&[u8]`); `name` labels the source in errors.
pub fn read_wav_from<R: Read>(mut reader: R, name: &str) -> Result<Audio> {
    // Check the magic ourselves so that any non-WAV input gets one plain message.
    let mut head = Vec::with_capacity(12);
    reader.by_ref().take(12).read_to_end(&mut head).map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..] != b"WAVE" {
        bail!("{name} is not a WAV file");
    }
    let wav = WavReader::new(Cursor::new(head).chain(reader)).map_err(|e| header_error(name, e))?;
    let spec = wav.spec();
    if spec.sample_rate == 0 {
        bail!("{name}: WAV header gives a sample rate of 0 Hz");
    }
    let expected = wav.len();
    if expected == 0 {
        bail!("{name} contains no audio samples");
    }
    let interleaved = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // hound sign-converts 8-bit data, so every width scales by its full range.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let samples = wav.into_samples::<i32>().map(|s| s.map(|v| v as f32 * scale));
            collect(samples, expected, name)?
        }
        (SampleFormat::Float, 32) => collect(wav.into_samples::<f32>(), expected, name)?,
        (format, bits) => {
            let kind = if format == SampleFormat::Int { "integer" } else { "float" };
            bail!("{name}: unsupported sample format {bits}-bit {kind} (supported: 8/16/24/32-bit integer PCM, 32-bit float)")
        }
    };
    let channels = usize::from(spec.channels);
    let samples = interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    Ok(Audio { samples, sample_rate: spec.sample_rate })
}

fn header_error(name: &str, err: hound::Error) -> anyhow::Error {
    match err {
        hound::Error::IoError(e) if is_short_read(&e) => anyhow!("{name}: WAV header is truncated"),
        hound::Error::IoError(e) => anyhow!("cannot read {name}: {e}"),
        hound::Error::FormatError(msg) => {
            anyhow!("{name}: unsupported or malformed WAV header: {msg}")
        }
        hound::Error::Unsupported => {
            anyhow!("{name}: unsupported WAV encoding (supported: integer PCM, 32-bit float)")
        }
        e => anyhow!("{name}: cannot decode WAV: {e}"),
    }
}

/// hound reports most short reads as `ErrorKind::Other` with this message.
fn is_short_read(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof || e.to_string() == "Failed to read enough bytes."
}

fn collect(samples: impl Iterator<Item = hound::Result<f32>>, expected: u32, name: &str) -> Result<Vec<f32>> {
    // No preallocation from `expected`: it comes from an untrusted header.
    let mut out = Vec::new();
    for sample in samples {
        match sample {
            Ok(v) => out.push(v),
            Err(hound::Error::IoError(e)) if is_short_read(&e) => {
                bail!("{name}: WAV data is truncated (header says {expected} samples, file holds {})", out.len())
            }
            Err(e) => bail!("cannot read {name}: {e}"),
        }
    }
    Ok(out)
}

/// Writes 16-bit PCM mono 16 kHz, atomically (see [`write_wav`]).
pub fn write_wav_16k(path: &Path, samples: &[f32]) -> Result<()> {
    write_wav(path, &Audio { samples: samples.to_vec(), sample_rate: SAMPLE_RATE })
}

/// Writes 16-bit PCM mono, atomically (see [`crate::atomic`]): a crash leaves the old file or
/// none, never a half-written one.
pub fn write_wav(path: &Path, audio: &Audio) -> Result<()> {
    let samples = &audio.samples;
    let spec =
        WavSpec { channels: 1, sample_rate: audio.sample_rate, bits_per_sample: 16, sample_format: SampleFormat::Int };
    let mut bytes = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let encoded = WavWriter::new(&mut bytes, spec).and_then(|mut writer| {
        for &s in samples {
            writer.write_sample((s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16)?;
        }
        writer.finalize()
    });
    encoded.map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    atomic::write_bytes(path, bytes.get_ref())
}
