//! One clip: `espeak-ng --stdout | sox` as subprocesses, then light noise in Rust.
//! Both tools are deterministic for fixed arguments (sox runs with `-R`), and the
//! noise comes from a per-clip seed, so a clip is a pure function of its recipe.

use super::voices::{Augmentation, Voice};
use super::{mix64, GOLDEN_GAMMA};
use crate::audio::SAMPLE_RATE;
use anyhow::{bail, Context, Result};
use std::io::ErrorKind;
use std::process::{Command, Stdio};

/// Short utterances are centred in this much audio, so every clip is at least 1 s long.
const MIN_SECONDS: f32 = 1.0;
/// Trim espeak-ng's own leading and trailing silence (the reverse trick trims the end),
/// with headroom so that pitch and reverb do not clip inside sox.
const BEFORE: &[&str] =
    &["gain", "-6", "silence", "1", "0.02", "0.3%", "reverse", "silence", "1", "0.02", "0.3%", "reverse"];
/// Peak -3 dBFS, then a little silence around the speech, as a real recording would have.
const AFTER: &[&str] = &["norm", "-3", "pad", "0.15", "0.25"];

/// Fails with an install hint when espeak-ng or sox cannot be run.
pub fn check_tools() -> Result<()> {
    for tool in ["espeak-ng", "sox"] {
        if let Err(e) = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            return Err(spawn_error(tool, e));
        }
    }
    Ok(())
}

fn spawn_error(tool: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == ErrorKind::NotFound {
        anyhow::anyhow!("{tool} not found: install it with `apt-get install {tool}` (or run `make deps`)")
    } else {
        anyhow::anyhow!("cannot run {tool}: {e}")
    }
}

/// Speaks `text` with `voice`, applies `augmentation`, and returns 16 kHz mono samples.
pub fn synthesize(text: &str, voice: &Voice, augmentation: &Augmentation, noise_seed: u64) -> Result<Vec<f32>> {
    let mut espeak = Command::new("espeak-ng")
        .args(voice.espeak_args())
        .arg("--stdout")
        .arg(text)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("espeak-ng", e))?;
    let speech = espeak.stdout.take().context("espeak-ng stdout")?;
    // Raw little-endian f32 out: a WAV header written to a pipe cannot carry the length.
    let sox = Command::new("sox")
        .args(["-V1", "-R", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-L", "-c", "1", "-r"])
        .arg(SAMPLE_RATE.to_string())
        .arg("-")
        .args(BEFORE)
        .args(augmentation.sox_effects)
        .args(AFTER)
        .stdin(speech)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("sox", e))?
        .wait_with_output()?;
    let espeak = espeak.wait_with_output()?;
    if !espeak.status.success() {
        bail!(
            "espeak-ng failed with voice {} on {text:?}: {}",
            voice.name(),
            String::from_utf8_lossy(&espeak.stderr).trim()
        );
    }
    if !sox.status.success() {
        bail!("sox failed ({}) on {text:?}: {}", augmentation.description, String::from_utf8_lossy(&sox.stderr).trim());
    }
    let mut samples: Vec<f32> =
        sox.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if samples.is_empty() {
        bail!("espeak-ng produced no audio with voice {} for {text:?}", voice.name());
    }
    pad_to_min_length(&mut samples);
    if let Some(snr_db) = augmentation.noise_snr_db {
        add_white_noise(&mut samples, snr_db, noise_seed);
    }
    Ok(samples)
}

fn pad_to_min_length(samples: &mut Vec<f32>) {
    let min = (MIN_SECONDS * SAMPLE_RATE as f32) as usize;
    if samples.len() < min {
        let before = (min - samples.len()) / 2;
        samples.splice(0..0, std::iter::repeat_n(0.0, before));
        samples.resize(min, 0.0);
    }
}

/// Gaussian white noise at `snr_db` below the clip's RMS, from a SplitMix64 stream
/// (fixed by its definition, unlike rand's StdRng, so corpora survive dependency upgrades).
fn add_white_noise(samples: &mut [f32], snr_db: f32, seed: u64) {
    let rms = (samples.iter().map(|s| f64::from(s * s)).sum::<f64>() / samples.len() as f64).sqrt();
    let sigma = rms * 10f64.powf(-f64::from(snr_db) / 20.0);
    let mut state = seed;
    let mut uniform = || {
        state = state.wrapping_add(GOLDEN_GAMMA);
        ((mix64(state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64 // in (0, 1]
    };
    for s in samples {
        // Box-Muller.
        let gaussian = (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
        *s += (sigma * gaussian) as f32;
    }
}
