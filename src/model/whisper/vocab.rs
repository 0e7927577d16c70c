//! Whisper's token ids turned back into text, without building its BPE.
//!
//! Transcribing only ever turns Whisper's tokens into text; turning text into
//! tokens (a prompt, training transcripts) is what needs the BPE merges. The
//! tokenizers crate builds both directions at once: about 35 ms of CPU per
//! load for Whisper's 50 k tokens and 50 k merges (release build), on one of
//! only two cores while the models load. This reads the vocabulary alone and
//! decodes as the crate does (its `ByteLevel` decoder, special tokens
//! skipped); `tests::decodes_as_the_tokenizer_does` checks it on every token
//! and on whole sentences. Whoever needs to encode builds the full tokenizer.

use crate::model::bpe::VocabText;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::HashMap;

/// Whisper's tokens as text, by id.
#[derive(Debug, Clone)]
pub struct WhisperVocab {
    /// Every token as stored (GPT-2's byte-level characters), one after another.
    text: String,
    /// Where each id's token lies in `text`.
    spans: Vec<Option<(u32, u32)>>,
    /// Ids of special tokens (`<|endoftext|>`, timestamps, …), left out of text.
    special: Vec<bool>,
    /// The added tokens' ids, by content: the control tokens are looked up by name.
    added: HashMap<String, u32>,
}

/// The parts of a `tokenizer.json` decoding needs.
#[derive(Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    model: Model,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct Model {
    vocab: VocabText,
}

impl WhisperVocab {
    /// Reads the vocabulary and added tokens of Whisper's `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let parsed: TokenizerJson = serde_json::from_str(json).context("not a tokenizer with a vocabulary")?;
        let mut spans = parsed.model.vocab.spans_by_id(parsed.added_tokens.iter().map(|t| t.id))?;
        let mut special = vec![false; spans.len()];
        let mut text = parsed.model.vocab.text;
        let mut added = HashMap::with_capacity(parsed.added_tokens.len());
        for token in parsed.added_tokens {
            let start = text.len() as u32;
            text.push_str(&token.content);
            spans[token.id as usize] = Some((start, text.len() as u32));
            special[token.id as usize] = token.special;
            added.insert(token.content, token.id);
        }
        Ok(Self { text, spans, special, added })
    }

    /// The id of an added (control) token, e.g. `<|endoftext|>`.
    pub fn added_token_id(&self, content: &str) -> Option<u32> {
        self.added.get(content).copied()
    }

    /// The text of `ids`, special tokens left out; unknown ids are skipped,
    /// and bytes that do not form UTF-8 become U+FFFD, as the crate does.
    pub fn decode(&self, ids: &[u32]) -> String {
        let table = byte_of_char();
        let mut bytes = Vec::new();
        for &id in ids {
            let id = id as usize;
            let Some(&Some((start, end))) = self.spans.get(id) else { continue };
            if self.special[id] {
                continue;
            }
            let token = &self.text[start as usize..end as usize];
            let mapped: Option<Vec<u8>> = token.chars().map(|c| table.get(c as usize).copied().flatten()).collect();
            // A token with a character outside the byte alphabet goes in as its own UTF-8.
            bytes.extend(mapped.unwrap_or_else(|| token.as_bytes().to_vec()));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The byte each of GPT-2's byte-level characters stands for, indexed by the
/// character: printable bytes stand for themselves, the other 68 are moved to
/// U+0100 onwards.
fn byte_of_char() -> &'static [Option<u8>] {
    static TABLE: std::sync::OnceLock<Vec<Option<u8>>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut table = vec![None; 0x100 + 68];
        let mut moved = 0x100;
        for b in 0..=255u8 {
            if printable(b) {
                table[usize::from(b)] = Some(b);
            } else {
                table[moved] = Some(b);
                moved += 1;
            }
        }
        table
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::file::MappedModel;

    #[test]
    fn decodes_as_the_tokenizer_does() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kioku-tiny-en.safetensors");
        let json = MappedModel::open(&path).expect("the default model (`make model`)").header.whisper_tokenizer;
        let (vocab, tokenizer) =
            (WhisperVocab::from_json(&json).unwrap(), tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap());
        let size = tokenizer.get_vocab_size(true) as u32;
        // Every token alone (specials give nothing), and ids past the vocabulary.
        for id in 0..size + 3 {
            assert_eq!(vocab.decode(&[id]), tokenizer.decode(&[id], true).unwrap(), "token {id}");
        }
        let texts = [
            " What is the capital of France?",
            " Ünïcödé — “quotes”, emoji 🎙️ and 日本語, numbers 1234567890, don't",
            "  Tabs\tand\nnewlines  ",
        ];
        let (start, end) =
            (vocab.added_token_id("<|startoftranscript|>").unwrap(), vocab.added_token_id("<|endoftext|>"));
        assert_eq!(Some(start), tokenizer.token_to_id("<|startoftranscript|>"));
        assert_eq!(end, tokenizer.token_to_id("<|endoftext|>"));
        for text in texts {
            let mut ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
            ids.insert(0, start);
            ids.extend(end);
            assert_eq!(vocab.decode(&ids), tokenizer.decode(&ids, true).unwrap(), "{text:?}");
            // Cut inside a character: the broken bytes become U+FFFD alike.
            let cut = &ids[..ids.len() - 3];
            assert_eq!(vocab.decode(cut), tokenizer.decode(cut, true).unwrap(), "{text:?} cut");
        }
        assert!(WhisperVocab::from_json("{\"model\":{}}").is_err());
        let past = WhisperVocab::from_json(r#"{"model":{"vocab":{"a":4000000000}}}"#).unwrap_err();
        assert!(past.to_string().contains("past the largest vocabulary"), "{past}");
    }
}
