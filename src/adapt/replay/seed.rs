//! Filling a buffer from the synthetic corpus: the train split's voices are the
//! speakers the model already knows, so their clips are what replay must keep
//! alive; and the base model's own answers to the corpus questions are the
//! text skill an adapted LLM must keep.

use super::{ReplayBuffer, ReplayItem};
use crate::assistant::{load_audio_16k, Assistant};
use crate::corpus::{Clip, Kind, Split};
use crate::generation::SamplingOptions;
use anyhow::{Context, Result};
use rayon::prelude::*;
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

    /// Offers the first `count` train-split clips of the corpus recipe
    /// (`kioku corpus`, seed 0), synthesized here in memory with espeak-ng and
    /// sox: the earlier voices a plain `kioku adapt` replays when neither a
    /// buffer nor a corpus directory exists yet. `on_clip` runs after each.
    pub fn seed_synthesized(&mut self, count: usize, on_clip: &(dyn Fn() + Sync)) -> Result<SeedSummary> {
        crate::corpus::check_tools()
            .context("seeding the replay buffer needs espeak-ng and sox (or pass --no-replay)")?;
        let clips: Vec<Clip> =
            crate::corpus::plan(0, None)?.into_iter().filter(|c| c.split == Split::Train).take(count).collect();
        let audio = clips
            .par_iter()
            .map(|c| {
                let audio = crate::corpus::synthesize(&c.utterance.text, c.voice, c.augmentation, c.noise_seed);
                on_clip();
                audio
            })
            .collect::<Result<Vec<_>>>()?;
        for (clip, audio) in clips.iter().zip(&audio) {
            self.offer(ReplayItem::speech(&clip.id, "corpus:train", audio, &clip.utterance.text, &clip.voice.name()));
        }
        let offered: HashSet<&str> = clips.iter().map(|c| c.id.as_str()).collect();
        let held = self.items().filter(|i| offered.contains(i.id.as_str())).count();
        Ok(SeedSummary { offered: clips.len(), held })
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
            if entry.split != split
                || !matches!(entry.kind, Kind::Question | Kind::Request)
                || self.items().any(|i| i.id == id)
            {
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
