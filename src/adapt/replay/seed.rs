//! Filling a buffer from the synthetic corpus: the train split's voices are the
//! speakers the model already knows, so their clips are what replay must keep
//! alive; and the base model's own answers to the corpus questions are the
//! text skill an adapted LLM must keep.

use super::{ReplayBuffer, ReplayItem};
use crate::assistant::{load_audio_16k, Assistant};
use crate::corpus::{Kind, Split};
use crate::generation::SamplingOptions;
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
        let dir = manifest.parent().unwrap_or(Path::new("."));
        let source = format!("corpus:{}", split.as_str());
        let mut offered = HashSet::new();
        for entry in crate::corpus::read_manifest(dir)? {
            if max_items.is_some_and(|max| offered.len() >= max) {
                break;
            }
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

    /// Offers the base model's greedy answers (at most `max_tokens`) to the
    /// first `count` questions and requests of the corpus `split` as text
    /// items (source `base-answers:<split>`); `on_item` runs after each.
    pub fn seed_text_answers(
        &mut self,
        assistant: &Assistant,
        corpus_dir: &Path,
        split: Split,
        count: usize,
        max_tokens: usize,
        on_item: &dyn Fn(),
    ) -> Result<SeedSummary> {
        let source = format!("base-answers:{}", split.as_str());
        let sampling = SamplingOptions { max_tokens, ..SamplingOptions::default() };
        let mut offered = HashSet::new();
        for entry in crate::corpus::read_manifest(corpus_dir)? {
            if offered.len() >= count {
                break;
            }
            let id = format!("text-{}", entry.id);
            if entry.split != split || !matches!(entry.kind, Kind::Question | Kind::Request) || self.items().any(|i| i.id == id) {
                continue;
            }
            let answer = assistant.ask_text(&entry.text, &sampling, &mut |_| {})?.answer;
            self.offer(ReplayItem::text(&id, &source, &entry.text, &answer));
            offered.insert(id);
            on_item();
        }
        let held = self.items().filter(|i| offered.contains(&i.id)).count();
        Ok(SeedSummary { offered: offered.len(), held })
    }
}
