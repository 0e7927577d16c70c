//! The experience-replay buffer: a bounded, on-disk sample of past training items
//! (earlier speakers' speech, the base model's text answers) that every adaptation
//! step mixes in, the remedy against forgetting that the design notes rank first.
//!
//! Sampling is a reservoir: every item ever offered draws a random key from the
//! buffer's seed and its offer number, and the buffer holds exactly the offered items
//! whose keys lie below a threshold that only ever falls. Under the item cap alone
//! that is the k smallest keys of all offers, a uniform sample of everything seen,
//! the same distribution as Algorithm R. Unlike Algorithm R it stays uniform when the
//! byte cap is the one that binds: making room evicts the largest key (a uniformly
//! random held item) and lowers the threshold, instead of letting every newcomer in.
//! Seed, offer count and threshold are saved with the items, so a reopened buffer
//! continues the very same sequence.

mod file;
mod item;
mod seed;

pub use item::{ReplayContent, ReplayItem, ReplayKind};
pub use seed::SeedSummary;

use crate::atomic;
use crate::audio::SAMPLE_RATE;
use crate::corpus::{mix64, GOLDEN_GAMMA};
use anyhow::{Context, Result};
use rand::seq::{index, SliceRandom};
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The seed of a buffer created by [`ReplayBuffer::open`].
pub const DEFAULT_SEED: u64 = 0;

/// Both caps hold after every offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    pub max_items: usize,
    /// Counted as [`ReplayItem::bytes`]: audio at 2 bytes a sample plus the strings.
    pub max_bytes: u64,
}

impl ReplayLimits {
    /// No cap: for looking at a buffer without evicting anything.
    pub const NONE: ReplayLimits = ReplayLimits { max_items: usize::MAX, max_bytes: u64::MAX };
}

impl Default for ReplayLimits {
    /// 512 items or 64 MB (about 33 minutes of speech), whichever binds first.
    fn default() -> Self {
        ReplayLimits { max_items: 512, max_bytes: 64_000_000 }
    }
}

/// What [`ReplayBuffer::offer`] did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Kept,
    /// Counted as seen, but the draw left it out (or a later eviction in the same offer took it).
    Passed,
    /// An item with this id is already held; nothing changed.
    AlreadyHeld,
    /// Larger than the byte cap on its own; nothing changed.
    TooLarge,
}

#[derive(Debug, Clone, PartialEq)]
struct Slot {
    key: u64,
    item: ReplayItem,
}

#[derive(Debug)]
pub struct ReplayBuffer {
    path: PathBuf,
    limits: ReplayLimits,
    seed: u64,
    /// Items offered so far, over the buffer's whole life.
    seen: u64,
    /// Every held key is below it; an offer whose key is not is passed over.
    threshold: u64,
    slots: Vec<Slot>,
    bytes: u64,
}

impl ReplayBuffer {
    /// An empty buffer that will be saved to `path`; nothing is read or written yet.
    pub fn new(path: &Path, limits: ReplayLimits, seed: u64) -> Self {
        ReplayBuffer {
            path: path.to_path_buf(),
            limits,
            seed,
            seen: 0,
            threshold: u64::MAX,
            slots: Vec::new(),
            bytes: 0,
        }
    }

    /// Loads the buffer at `path`, or starts an empty one (seed [`DEFAULT_SEED`]) if
    /// there is no file. A file that fails its checks is an error, never replaced.
    /// Limits lower than the file's contents evict at once (in memory until saved).
    pub fn open(path: &Path, limits: ReplayLimits) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new(path, limits, DEFAULT_SEED)),
            Err(e) => return Err(e).with_context(|| format!("cannot read replay buffer {}", path.display())),
        };
        let stored = file::decode(path, &bytes)?;
        let mut buffer = Self::new(path, limits, stored.seed);
        buffer.seen = stored.seen;
        buffer.threshold = stored.threshold;
        buffer.bytes = stored.slots.iter().map(|s| s.item.bytes()).sum();
        buffer.slots = stored.slots;
        buffer.enforce_limits();
        Ok(buffer)
    }

    /// Writes the buffer to its path atomically (the old file stays whole until the new one is durable).
    pub fn save(&self) -> Result<()> {
        atomic::write_bytes(&self.path, &file::encode(self)?)
    }

    /// Reservoir insert; see the module notes.
    pub fn offer(&mut self, item: ReplayItem) -> Offer {
        if self.slots.iter().any(|s| s.item.id == item.id) {
            return Offer::AlreadyHeld;
        }
        // Admitting it would evict everything with a larger key before evicting it.
        if item.bytes() > self.limits.max_bytes {
            return Offer::TooLarge;
        }
        let key = self.key_of_offer(self.seen);
        self.seen += 1;
        if key >= self.threshold {
            return Offer::Passed;
        }
        self.bytes += item.bytes();
        self.slots.push(Slot { key, item });
        self.enforce_limits();
        if key < self.threshold {
            Offer::Kept
        } else {
            Offer::Passed
        }
    }

    /// Up to `n` distinct items, uniformly at random.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<&ReplayItem> {
        index::sample(rng, self.slots.len(), n.min(self.slots.len())).into_iter().map(|i| &self.slots[i].item).collect()
    }

    /// Up to `n` distinct items, a `text_share` of them text and the rest speech, each
    /// kind drawn uniformly; a kind that runs short is made up from the other. Shuffled.
    pub fn sample_mixed<R: Rng + ?Sized>(&self, n: usize, text_share: f64, rng: &mut R) -> Vec<&ReplayItem> {
        let of_kind = |kind| self.items().filter(|i| i.kind() == kind).collect::<Vec<_>>();
        let (speech, text) = (of_kind(ReplayKind::Speech), of_kind(ReplayKind::Text));
        let n = n.min(self.slots.len());
        let wanted_text = (n as f64 * text_share.clamp(0.0, 1.0)).round() as usize;
        let n_text = wanted_text.min(text.len()).max(n - n.min(speech.len()));
        let mut picked: Vec<&ReplayItem> =
            index::sample(rng, text.len(), n_text).into_iter().map(|i| text[i]).collect();
        picked.extend(index::sample(rng, speech.len(), n - n_text).into_iter().map(|i| speech[i]));
        picked.shuffle(rng);
        picked
    }

    pub fn items(&self) -> impl Iterator<Item = &ReplayItem> {
        self.slots.iter().map(|s| &s.item)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The held items' [`ReplayItem::bytes`].
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Items offered over the buffer's life (held or not).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn limits(&self) -> ReplayLimits {
        self.limits
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> ReplayStats {
        let mut stats = ReplayStats {
            items: self.len(),
            bytes: self.bytes,
            seen: self.seen,
            speech_seconds: 0.0,
            by_kind: ReplayKind::ALL.iter().map(|k| (k.as_str().to_string(), 0)).collect(),
            by_speaker: BTreeMap::new(),
            by_source: BTreeMap::new(),
        };
        for item in self.items() {
            *stats.by_kind.entry(item.kind().as_str().to_string()).or_default() += 1;
            *stats.by_source.entry(item.source.clone()).or_default() += 1;
            if let ReplayContent::Speech { audio, speaker, .. } = &item.content {
                *stats.by_speaker.entry(speaker.clone()).or_default() += 1;
                stats.speech_seconds += audio.len() as f64 / f64::from(SAMPLE_RATE);
            }
        }
        stats
    }

    /// SplitMix64's n-th output for this seed: independent of what was kept, so the
    /// draws are the same however the offers were spread over runs.
    fn key_of_offer(&self, n: u64) -> u64 {
        mix64(self.seed.wrapping_add(n.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
    }

    /// Evicts the largest key until both caps hold.
    fn enforce_limits(&mut self) {
        while self.slots.len() > self.limits.max_items || self.bytes > self.limits.max_bytes {
            let Some((largest, _)) = self.slots.iter().enumerate().max_by_key(|(_, s)| s.key) else { break };
            let evicted = self.slots.swap_remove(largest);
            self.bytes -= evicted.item.bytes();
            self.threshold = evicted.key;
        }
    }
}

/// What a buffer holds, as `kioku replay info` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayStats {
    pub items: usize,
    pub bytes: u64,
    pub seen: u64,
    pub speech_seconds: f64,
    pub by_kind: BTreeMap<String, usize>,
    pub by_speaker: BTreeMap<String, usize>,
    pub by_source: BTreeMap<String, usize>,
}
