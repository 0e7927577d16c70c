//! What the replay buffer holds: past speech (audio + transcript) that keeps the
//! model hearing earlier voices, and text exchanges that keep the LLM's own answers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayKind {
    Speech,
    Text,
}

impl ReplayKind {
    pub const ALL: [ReplayKind; 2] = [ReplayKind::Speech, ReplayKind::Text];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplayKind::Speech => "speech",
            ReplayKind::Text => "text",
        }
    }
}

/// One past training item. `id` is stable (a corpus clip id, a hash of a prompt):
/// the buffer holds each id at most once.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayItem {
    pub id: String,
    /// Where it came from, e.g. `corpus:train` or `adapt:<speaker>`.
    pub source: String,
    pub content: ReplayContent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplayContent {
    /// 16 kHz mono audio as 16-bit PCM (half of f32's size, and what WAV files hold anyway).
    Speech { audio: Vec<i16>, transcript: String, speaker: String },
    /// A prompt and the base model's own answer to it.
    Text { prompt: String, answer: String },
}

impl ReplayItem {
    /// A speech item from 16 kHz samples in [-1, 1] (louder samples are clipped).
    pub fn speech(id: &str, source: &str, audio_16k: &[f32], transcript: &str, speaker: &str) -> Self {
        let audio = audio_16k.iter().map(|&s| (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16).collect();
        let content = ReplayContent::Speech { audio, transcript: transcript.into(), speaker: speaker.into() };
        ReplayItem { id: id.into(), source: source.into(), content }
    }

    pub fn text(id: &str, source: &str, prompt: &str, answer: &str) -> Self {
        let content = ReplayContent::Text { prompt: prompt.into(), answer: answer.into() };
        ReplayItem { id: id.into(), source: source.into(), content }
    }

    pub fn kind(&self) -> ReplayKind {
        match self.content {
            ReplayContent::Speech { .. } => ReplayKind::Speech,
            ReplayContent::Text { .. } => ReplayKind::Text,
        }
    }

    /// The speaker of a speech item; None for text.
    pub fn speaker(&self) -> Option<&str> {
        match &self.content {
            ReplayContent::Speech { speaker, .. } => Some(speaker),
            ReplayContent::Text { .. } => None,
        }
    }

    /// The audio as f32 samples in [-1, 1], ready for the mel front end; empty for text.
    pub fn audio_16k(&self) -> Vec<f32> {
        match &self.content {
            ReplayContent::Speech { audio, .. } => audio.iter().map(|&s| f32::from(s) / f32::from(i16::MAX)).collect(),
            ReplayContent::Text { .. } => Vec::new(),
        }
    }

    /// What the item costs against the byte cap: its audio plus its strings, about
    /// what it adds to the file.
    pub fn bytes(&self) -> u64 {
        let strings = self.id.len() + self.source.len();
        let content = match &self.content {
            ReplayContent::Speech { audio, transcript, speaker } => 2 * audio.len() + transcript.len() + speaker.len(),
            ReplayContent::Text { prompt, answer } => prompt.len() + answer.len(),
        };
        (strings + content) as u64
    }
}
