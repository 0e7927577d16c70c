//! The synthetic spoken corpus: a bank of assistant utterances ([`utterance_bank`]) spoken
//! by espeak-ng voices ([`VOICES`]) under sox augmentations ([`AUGMENTATIONS`]), split
//! train / dev / test disjointly by text *and* by voice.
//!
//! [`plan`] decides, from a seed, which utterances are spoken by which voice under which
//! augmentation; [`generate`] renders that plan to `DIR/{train,dev,test}/<id>.wav`,
//! `DIR/manifest.jsonl` and `DIR/{split}/transcripts.tsv`. A clip's id is a hash of its
//! recipe, so rerunning into the same directory only synthesizes what is missing.

mod synth;
mod text;
mod transcribed;
mod voices;

pub use synth::{check_tools, synthesize};
pub use text::{utterance_bank, Kind, Utterance};
pub use transcribed::{read_transcribed_dir, synthesize_transcribed_dir, TranscribedClip, TRANSCRIPTS_FILE};
pub use voices::{voice_named, voices_of, Augmentation, Voice, AUGMENTATIONS, VOICES};

use crate::atomic;
use crate::audio::{write_wav_16k, SAMPLE_RATE};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// Part of every clip id: bump it when synthesis changes, so a resumed run cannot reuse old clips.
const RECIPE_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// 80 / 10 / 10 by a hash of the utterance's group, whatever the seed: every phrasing of
/// one fact or command lands in the same split, and a test text stays a test text.
pub fn split_of(utterance: &Utterance) -> Split {
    match stable_hash(&["split", &utterance.group]) % 10 {
        0 => Split::Test,
        1 => Split::Dev,
        _ => Split::Train,
    }
}

/// One utterance to render: its text, speaker, augmentation and noise seed.
#[derive(Debug, Clone)]
pub struct Clip {
    /// `<kind>-<hash of the recipe>`.
    pub id: String,
    pub split: Split,
    pub utterance: Utterance,
    pub voice: &'static Voice,
    pub augmentation: &'static Augmentation,
    pub noise_seed: u64,
}

impl Clip {
    /// Relative to the corpus directory: `<split>/<id>.wav`.
    pub fn path(&self) -> String {
        format!("{}/{}.wav", self.split.as_str(), self.id)
    }
}

/// The clips of a corpus, train then dev then test. Each split's utterances are put in a
/// seeded order, then spoken by the split's voices in turn; each voice cycles through the
/// augmentations. `utterances` (default: the whole bank) is shared among the splits in
/// proportion to their sizes.
pub fn plan(seed: u64, utterances: Option<usize>) -> Result<Vec<Clip>> {
    let bank = utterance_bank();
    let total = bank.len();
    let wanted = utterances.unwrap_or(total);
    if wanted > total {
        bail!("asked for {wanted} utterances, but the bank holds {total}");
    }
    let seed = seed.to_string();
    let mut clips = Vec::with_capacity(wanted);
    for split in Split::ALL {
        let mut items: Vec<&Utterance> = bank.iter().filter(|u| split_of(u) == split).collect();
        let quota = match split {
            Split::Train => wanted - Split::ALL[1..].iter().map(|&s| share(&bank, s, wanted)).sum::<usize>(),
            _ => share(&bank, split, wanted),
        };
        items.sort_by_cached_key(|u| stable_hash(&[&seed, "order", &u.text]));
        let voices = voices_of(split);
        for (i, utterance) in items.into_iter().take(quota).enumerate() {
            let voice = voices[i % voices.len()];
            let augmentation = &AUGMENTATIONS[(i / voices.len()) % AUGMENTATIONS.len()];
            let noise_seed = stable_hash(&[&seed, "noise", &utterance.text]);
            let recipe = stable_hash(&[
                RECIPE_VERSION,
                &utterance.text,
                &voice.name(),
                augmentation.description,
                &noise_seed.to_string(),
            ]);
            clips.push(Clip {
                id: format!("{}-{:012x}", utterance.kind.as_str(), recipe >> 16),
                split,
                utterance: utterance.clone(),
                voice,
                augmentation,
                noise_seed,
            });
        }
    }
    Ok(clips)
}

/// `split`'s part of `wanted`, rounded to nearest.
fn share(bank: &[Utterance], split: Split, wanted: usize) -> usize {
    let in_split = bank.iter().filter(|u| split_of(u) == split).count();
    (wanted * in_split + bank.len() / 2) / bank.len()
}

/// One line of `manifest.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub id: String,
    pub split: Split,
    /// Relative to the corpus directory.
    pub path: String,
    pub text: String,
    pub kind: Kind,
    pub reference_answer: Option<String>,
    pub voice: String,
    pub augmentation: String,
    pub duration_s: f64,
}

#[derive(Debug)]
pub struct Summary {
    pub entries: Vec<ManifestEntry>,
    /// Clips rendered by this run.
    pub synthesized: usize,
    /// Clips already present from an earlier run.
    pub reused: usize,
    /// WAVs of other recipes (another seed or size) deleted from the split folders.
    pub removed: usize,
}

/// Renders `clips` into `out` with `jobs` espeak-ng/sox pipelines at a time, calling
/// `on_clip` after each, then writes the manifest and transcripts and removes WAVs that
/// the plan no longer lists.
pub fn generate(out: &Path, clips: &[Clip], jobs: usize, on_clip: &(dyn Fn() + Sync)) -> Result<Summary> {
    check_tools()?;
    for split in Split::ALL {
        let dir = out.join(split.as_str());
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build()?;
    let rendered = pool.install(|| {
        clips
            .par_iter()
            .map(|clip| {
                let rendered = render(out, clip);
                on_clip();
                rendered
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let reused = rendered.iter().filter(|(_, reused)| *reused).count();
    let entries: Vec<ManifestEntry> = rendered.into_iter().map(|(entry, _)| entry).collect();
    let manifest: String =
        entries.iter().map(|e| serde_json::to_string(e).map(|line| line + "\n")).collect::<Result<_, _>>()?;
    atomic::write_bytes(&out.join("manifest.jsonl"), manifest.as_bytes())?;
    for split in Split::ALL {
        let tsv: String =
            entries.iter().filter(|e| e.split == split).map(|e| format!("{}\t{}\n", e.id, e.text)).collect();
        atomic::write_bytes(&out.join(split.as_str()).join(TRANSCRIPTS_FILE), tsv.as_bytes())?;
    }
    let removed = remove_stale(out, &entries)?;
    Ok(Summary { synthesized: entries.len() - reused, reused, removed, entries })
}

/// Returns the clip's manifest entry and whether its WAV was already there.
fn render(out: &Path, clip: &Clip) -> Result<(ManifestEntry, bool)> {
    let path = out.join(clip.path());
    // Ids hash the whole recipe and WAVs are written atomically: a readable file is this clip.
    let existing = hound::WavReader::open(&path)
        .ok()
        .filter(|w| w.spec().sample_rate == SAMPLE_RATE)
        .map(|w| w.duration() as usize);
    let (samples, reused) = match existing {
        Some(n) => (n, true),
        None => {
            let u = &clip.utterance;
            let audio = synthesize(&u.text, clip.voice, clip.augmentation, clip.noise_seed)?;
            write_wav_16k(&path, &audio)?;
            (audio.len(), false)
        }
    };
    let u = &clip.utterance;
    let entry = ManifestEntry {
        id: clip.id.clone(),
        split: clip.split,
        path: clip.path(),
        text: u.text.clone(),
        kind: u.kind,
        reference_answer: u.reference_answer.clone(),
        voice: clip.voice.name(),
        augmentation: clip.augmentation.description.to_string(),
        duration_s: (samples as f64 / f64::from(SAMPLE_RATE) * 1000.0).round() / 1000.0,
    };
    Ok((entry, reused))
}

/// Deletes WAVs not in `entries`, and temp files left by an interrupted run.
fn remove_stale(out: &Path, entries: &[ManifestEntry]) -> Result<usize> {
    let listed: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut removed = 0;
    for split in Split::ALL {
        for file in fs::read_dir(out.join(split.as_str()))? {
            let path = file?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let stale = name.ends_with(".wav") && !listed.contains(format!("{}/{name}", split.as_str()).as_str());
            let leftover = name.starts_with('.') && name.contains(".wav.tmp-");
            if stale || leftover {
                fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

pub(crate) const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a strong 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over the parts, then mixed. Unlike std's hasher its value is fixed by definition,
/// so splits, orders and ids are the same on every machine and toolchain.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(&[0xff]) {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    mix64(h)
}

/// Reads `DIR/manifest.jsonl` as written by [`generate`].
pub fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>> {
    let path = dir.join("manifest.jsonl");
    let text = fs::read_to_string(&path).with_context(|| {
        format!("cannot read {} (create the corpus with `kioku corpus --out {}`)", path.display(), dir.display())
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {} is not a manifest entry", path.display(), i + 1))
        })
        .collect()
}
