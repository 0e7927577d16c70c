//! Synthetic speakers (espeak-ng accent × voice variant × rate × pitch) and the
//! sox augmentation chains applied on top of them.
//!
//! Every voice variant is used by exactly one voice, so a dev or test voice shares
//! no variant with any training voice, and the West Midlands accent
//! (`en-gb-x-gbcwmd`) is never heard in training at all.

use super::Split;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    /// espeak-ng voice name: the accent.
    pub accent: &'static str,
    /// espeak-ng variant (`!v/` file): timbre, formants, breathiness.
    pub variant: &'static str,
    /// Speaking rate in words per minute (espeak-ng `-s`).
    pub rate_wpm: u32,
    /// Base pitch 0-99 (espeak-ng `-p`).
    pub pitch: u32,
    pub split: Split,
}

impl Voice {
    /// Stable identifier, e.g. `en-us+m1-s170-p50`; it names the voice in the manifest.
    pub fn name(&self) -> String {
        format!("{}+{}-s{}-p{}", self.accent, self.variant, self.rate_wpm, self.pitch)
    }

    pub fn espeak_args(&self) -> Vec<String> {
        vec![
            "-v".into(),
            format!("{}+{}", self.accent, self.variant),
            "-s".into(),
            self.rate_wpm.to_string(),
            "-p".into(),
            self.pitch.to_string(),
        ]
    }
}

const fn voice(accent: &'static str, variant: &'static str, rate_wpm: u32, pitch: u32, split: Split) -> Voice {
    Voice { accent, variant, rate_wpm, pitch, split }
}

pub const VOICES: &[Voice] = &[
    voice("en-us", "m1", 170, 50, Split::Train),
    voice("en-us", "f2", 160, 60, Split::Train),
    voice("en-gb", "m3", 165, 45, Split::Train),
    voice("en-gb", "f4", 155, 55, Split::Train),
    voice("en-gb-scotland", "m2", 160, 40, Split::Train),
    voice("en-gb-x-rp", "m5", 175, 50, Split::Train),
    voice("en-gb-x-rp", "f1", 150, 65, Split::Train),
    voice("en-029", "m4", 165, 50, Split::Train),
    voice("en-us-nyc", "m6", 180, 45, Split::Train),
    voice("en-gb-x-gbclan", "f3", 155, 60, Split::Train),
    voice("en-us", "klatt2", 170, 35, Split::Train),
    voice("en-gb", "john", 160, 50, Split::Train),
    voice("en-us", "steph", 165, 55, Split::Train),
    voice("en-gb-scotland", "paul", 170, 50, Split::Train),
    voice("en-us", "m8", 160, 45, Split::Dev),
    voice("en-gb-x-gbcwmd", "f5", 165, 60, Split::Dev),
    voice("en-029", "iven", 175, 40, Split::Dev),
    voice("en-us-nyc", "m7", 170, 55, Split::Test),
    voice("en-gb-x-gbcwmd", "grandpa", 155, 40, Split::Test),
    voice("en-gb-scotland", "klatt3", 175, 50, Split::Test),
];

/// The voice whose [`Voice::name`] is `name`; the error lists the test voices,
/// the ones no model was trained on.
pub fn voice_named(name: &str) -> anyhow::Result<&'static Voice> {
    VOICES.iter().find(|v| v.name() == name).ok_or_else(|| {
        let names: Vec<String> = voices_of(Split::Test).into_iter().map(Voice::name).collect();
        anyhow::anyhow!("unknown voice {name:?}; test voices: {}", names.join(", "))
    })
}

pub fn voices_of(split: Split) -> Vec<&'static Voice> {
    VOICES.iter().filter(|v| v.split == split).collect()
}

/// A sox effect chain plus optional white noise (added in Rust, seeded per clip).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Human-readable and unique; it is what the manifest records.
    pub description: &'static str,
    pub sox_effects: &'static [&'static str],
    /// Signal-to-noise ratio of the added white noise, in dB.
    pub noise_snr_db: Option<f32>,
}

const fn aug(
    description: &'static str,
    sox_effects: &'static [&'static str],
    noise_snr_db: Option<f32>,
) -> Augmentation {
    Augmentation { description, sox_effects, noise_snr_db }
}

/// Cycled per voice, so each voice is heard under every condition.
pub const AUGMENTATIONS: &[Augmentation] = &[
    aug("clean", &[], None),
    aug("tempo 0.9", &["tempo", "0.9"], None),
    aug("tempo 1.1", &["tempo", "1.1"], None),
    aug("pitch +200 cents", &["pitch", "200"], None),
    aug("pitch -200 cents", &["pitch", "-200"], None),
    aug("telephone band 300-3400 Hz", &["sinc", "300-3400"], None),
    aug("room reverb 40%", &["reverb", "40"], None),
    aug("white noise 30 dB SNR", &[], Some(30.0)),
    aug("tempo 1.05, reverb 25%, white noise 25 dB SNR", &["tempo", "1.05", "reverb", "25"], Some(25.0)),
    aug("pitch -100 cents, telephone band, white noise 35 dB SNR", &["pitch", "-100", "sinc", "300-3400"], Some(35.0)),
    aug("tempo 0.95, pitch +100 cents, reverb 20%", &["tempo", "0.95", "pitch", "100", "reverb", "20"], None),
    aug("band 150-5000 Hz, white noise 28 dB SNR", &["sinc", "150-5000"], Some(28.0)),
];
