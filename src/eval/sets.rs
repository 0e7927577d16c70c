//! What a forgetting report measures on, chosen once and shared by every arm:
//! a new speaker's held-out clips, clips of voices the model already handles,
//! real recorded speech, and typed questions (spoken too, when a corpus has
//! their clips). Every sample is a seeded hash order, so the same flags give
//! the same items on every machine.

use super::pocketsphinx;
use crate::corpus::{
    read_manifest, read_transcribed_dir, split_of, stable_hash, synthesize_transcribed_dir, utterance_bank,
    voice_named, Kind, Split, TranscribedClip,
};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A typed question, with its spoken form when a corpus provides one.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    pub id: String,
    pub text: String,
    /// A short answer a correct reply contains ("Paris"), when there is one.
    pub reference_answer: Option<String>,
    pub audio: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalSets {
    pub new_speaker: Vec<TranscribedClip>,
    pub earlier_speakers: Vec<TranscribedClip>,
    pub real_speech: Vec<TranscribedClip>,
    pub questions: Vec<Question>,
    /// The voice that speaks the questions, when they were synthesized for
    /// this report (else each corpus clip's own voice).
    pub question_voice: Option<String>,
}

/// The first `n` items in a hash order fixed by `seed`.
fn sample<T>(mut items: Vec<T>, n: usize, seed: u64, key: impl Fn(&T) -> &str) -> Vec<T> {
    let seed = seed.to_string();
    items.sort_by_cached_key(|item| stable_hash(&[&seed, "eval", key(item)]));
    items.truncate(n);
    items
}

impl EvalSets {
    /// At most `n` held-out clips of a new speaker's directory (WAVs + transcripts.tsv).
    pub fn with_new_speaker(mut self, dir: &Path, n: usize, seed: u64) -> Result<Self> {
        let clips = read_transcribed_dir(dir).with_context(|| format!("new-speaker set {}", dir.display()))?;
        self.new_speaker = sample(clips, n, seed, |c| &c.id);
        Ok(self)
    }

    /// At most `n` clips of `split` of the corpus in `dir` (its manifest.jsonl):
    /// voices the model is expected to keep handling.
    pub fn with_earlier_speakers(mut self, dir: &Path, split: Split, n: usize, seed: u64) -> Result<Self> {
        let clips: Vec<TranscribedClip> = read_manifest(dir)?
            .into_iter()
            .filter(|e| e.split == split)
            .map(|e| TranscribedClip { path: dir.join(&e.path), id: e.id, text: e.text })
            .collect();
        if clips.is_empty() && n > 0 {
            bail!("corpus {} has no {} clips", dir.display(), split.as_str());
        }
        self.earlier_speakers = sample(clips, n, seed, |c| &c.id);
        Ok(self)
    }

    /// The first `n` pocketsphinx-testdata clips (there are ten).
    pub fn with_real_speech(mut self, n: usize) -> Result<Self> {
        self.real_speech = if n == 0 { Vec::new() } else { pocketsphinx::real_speech()?.into_iter().take(n).collect() };
        Ok(self)
    }

    /// `n` questions of the test split: the clips of the corpus in `corpus`
    /// (spoken and typed), or without a corpus the utterance bank's test
    /// questions (typed only).
    pub fn with_questions(mut self, corpus: Option<&Path>, n: usize, seed: u64) -> Result<Self> {
        let questions = match corpus {
            Some(dir) => read_manifest(dir)?
                .into_iter()
                .filter(|e| e.split == Split::Test && e.kind == Kind::Question)
                .map(|e| Question {
                    audio: Some(dir.join(&e.path)),
                    id: e.id,
                    text: e.text,
                    reference_answer: e.reference_answer,
                })
                .collect(),
            None => utterance_bank()
                .into_iter()
                .filter(|u| u.kind == Kind::Question && split_of(u) == Split::Test)
                .map(|u| Question {
                    id: format!("{:012x}", stable_hash(&[&u.text]) >> 16),
                    text: u.text,
                    reference_answer: u.reference_answer,
                    audio: None,
                })
                .collect(),
        };
        self.questions = sample(questions, n, seed, |q| &q.id);
        Ok(self)
    }

    /// The questions spoken anew by `voice` (espeak-ng) into `dir`: the
    /// end-to-end answers are then measured in that voice, typically the new
    /// speaker's, whose spoken questions the adaptation is for.
    pub fn with_questions_spoken_by(mut self, voice: &str, dir: &Path) -> Result<Self> {
        let texts: Vec<String> = self.questions.iter().map(|q| q.text.clone()).collect();
        if texts.is_empty() {
            return Ok(self);
        }
        let clips = synthesize_transcribed_dir(dir, voice_named(voice)?, &texts)
            .with_context(|| format!("speaking the questions in {voice}"))?;
        for (question, clip) in self.questions.iter_mut().zip(clips) {
            question.audio = Some(clip.path);
        }
        self.question_voice = Some(voice.to_string());
        Ok(self)
    }

    /// How many items one arm is scored on (spoken questions count when `e2e`).
    pub fn items(&self, e2e: bool) -> usize {
        let spoken = if e2e { self.questions.iter().filter(|q| q.audio.is_some()).count() } else { 0 };
        self.new_speaker.len() + self.earlier_speakers.len() + self.real_speech.len() + self.questions.len() + spoken
    }
}
