//! Filling a buffer from the synthetic corpus: the train split's voices are the
//! speakers the model already knows, so their clips are what replay must keep alive.

use super::{ReplayBuffer, ReplayItem};
use crate::assistant::load_audio_16k;
use crate::corpus::{ManifestEntry, Split};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    /// Clips offered to the reservoir (already held ones not counted).
    pub offered: usize,
    /// Of those, how many the buffer holds once all were offered.
    pub held: usize,
}

impl ReplayBuffer {
    /// Offers the `split` clips of a corpus manifest (`manifest.jsonl`, see
    /// [`crate::corpus::generate`]) as speech items, in manifest order, at most
    /// `max_items` of them; source `corpus:<split>`, speaker the clip's voice.
    pub fn seed_from_corpus(&mut self, manifest: &Path, split: Split, max_items: Option<usize>) -> Result<SeedSummary> {
        let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read corpus manifest {}", manifest.display()))?;
        let dir = manifest.parent().unwrap_or(Path::new("."));
        let source = format!("corpus:{}", split.as_str());
        let mut offered = HashSet::new();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            if max_items.is_some_and(|max| offered.len() >= max) {
                break;
            }
            let entry: ManifestEntry = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a corpus manifest entry", manifest.display(), number + 1))?;
            if entry.split != split || self.items().any(|i| i.id == entry.id) {
                continue;
            }
            let audio = load_audio_16k(&dir.join(&entry.path))
                .with_context(|| format!("clip {} of {}", entry.id, manifest.display()))?;
            self.offer(ReplayItem::speech(&entry.id, &source, &audio, &entry.text, &entry.voice));
            offered.insert(entry.id);
        }
        let held = self.items().filter(|i| offered.contains(&i.id)).count();
        Ok(SeedSummary { offered: offered.len(), held })
    }
}
