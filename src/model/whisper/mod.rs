//! Whisper: the speech encoder shared by both answer paths, and the ASR decoder
//! that turns its output into a transcript (the cascade path).

mod decoder;
mod encoder;
mod layers;
mod vocab;

pub use decoder::{AsrDecoder, DecoderState, SILENCE_CONTEXT, SILENCE_KV};
pub use encoder::WhisperEncoder;
pub use vocab::WhisperVocab;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Architecture of a Whisper checkpoint, stored as JSON in the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhisperConfig {
    pub n_mels: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_heads: usize,
    pub decoder_layers: usize,
    pub decoder_heads: usize,
    pub vocab_size: usize,
    /// Encoder positions: 1500 frames = 30 s of audio after the stride-2 conv.
    pub max_source_positions: usize,
    pub max_target_positions: usize,
    /// Tokens never emitted during transcription.
    pub suppress_tokens: Vec<u32>,
    /// Tokens not allowed as the first transcribed token (blank, end of text).
    pub begin_suppress_tokens: Vec<u32>,
}

impl WhisperConfig {
    pub fn ffn_dim(&self) -> usize {
        4 * self.d_model
    }

    /// English-only checkpoints (`*.en`) have a 51864-token vocabulary and no
    /// language or task tokens in their prompt.
    pub fn is_multilingual(&self) -> bool {
        self.vocab_size >= 51865
    }

    /// Mel frames per 30 s window (the encoder's maximum input).
    pub fn max_mel_frames(&self) -> usize {
        2 * self.max_source_positions
    }
}

/// Ids of Whisper's control tokens, looked up by name in its tokenizer.
#[derive(Debug, Clone)]
pub struct WhisperSpecialTokens {
    pub start_of_transcript: u32,
    pub end_of_text: u32,
    pub no_timestamps: u32,
    /// `<|startofprev|>`: the text before it conditions the transcript (a prompt).
    pub start_of_prev: Option<u32>,
    /// `<|nospeech|>` (`<|nocaptions|>` in English-only checkpoints), if present.
    pub no_speech: Option<u32>,
    /// Language and task tokens, present only for multilingual checkpoints.
    pub english: Option<u32>,
    pub transcribe: Option<u32>,
}

impl WhisperSpecialTokens {
    pub fn from_tokenizer(tokenizer: &crate::model::bpe::TextTokenizer, config: &WhisperConfig) -> Result<Self> {
        Self::from_lookup(|name| tokenizer.token_to_id(name), config)
    }

    pub fn from_vocab(vocab: &WhisperVocab, config: &WhisperConfig) -> Result<Self> {
        Self::from_lookup(|name| vocab.added_token_id(name), config)
    }

    fn from_lookup(token_id: impl Fn(&str) -> Option<u32>, config: &WhisperConfig) -> Result<Self> {
        let id = |name: &str| token_id(name).with_context(|| format!("the Whisper tokenizer has no `{name}` token"));
        let multilingual = config.is_multilingual();
        Ok(Self {
            start_of_transcript: id("<|startoftranscript|>")?,
            end_of_text: id("<|endoftext|>")?,
            no_timestamps: id("<|notimestamps|>")?,
            start_of_prev: token_id("<|startofprev|>"),
            no_speech: token_id("<|nospeech|>").or_else(|| token_id("<|nocaptions|>")),
            english: if multilingual { Some(id("<|en|>")?) } else { None },
            transcribe: if multilingual { Some(id("<|transcribe|>")?) } else { None },
        })
    }

    /// The decoder prompt for English transcription without timestamps.
    pub fn prompt(&self) -> Vec<u32> {
        [Some(self.start_of_transcript), self.english, self.transcribe, Some(self.no_timestamps)]
            .into_iter()
            .flatten()
            .collect()
    }
}
