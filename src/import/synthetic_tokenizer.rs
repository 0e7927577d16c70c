//! Byte-level BPE tokenizers made up from nothing but a vocabulary size, for
//! models with random weights: every id a model can emit decodes, every text
//! encodes, and the control tokens kioku looks up by name are present.

use serde_json::{json, Value};

/// GPT-2's printable stand-ins for the 256 bytes, in byte order (the
/// alphabet of every byte-level BPE vocabulary).
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut shifted = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap()
            }
        })
        .collect()
}

fn added_token(id: usize, content: &str) -> Value {
    json!({ "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true })
}

/// The layout of a synthetic vocabulary: control tokens before the text
/// tokens, `text_tokens` text tokens (the 256 bytes, then two-byte merges),
/// control tokens after them, then `filler` names up to `vocab_size`.
pub struct SyntheticVocab<'a> {
    pub before: &'a [&'a str],
    pub text_tokens: usize,
    pub after: &'a [&'a str],
    pub filler: &'a dyn Fn(usize) -> String,
    pub vocab_size: usize,
}

impl SyntheticVocab<'_> {
    /// The tokenizer as Hugging Face `tokenizer.json` text.
    pub fn to_json(&self) -> String {
        let alphabet = byte_alphabet();
        assert!(
            self.text_tokens >= alphabet.len() && self.text_tokens <= alphabet.len() * (alphabet.len() + 1),
            "text tokens out of range"
        );
        let merges: Vec<(char, char)> = alphabet
            .iter()
            .flat_map(|&a| alphabet.iter().map(move |&b| (a, b)))
            .take(self.text_tokens - alphabet.len())
            .collect();
        let texts = alphabet.iter().map(char::to_string).chain(merges.iter().map(|(a, b)| format!("{a}{b}")));
        let after_start = self.before.len() + self.text_tokens;
        let filler_start = after_start + self.after.len();
        let controls: Vec<String> = self
            .before
            .iter()
            .chain(self.after)
            .map(|t| t.to_string())
            .chain((filler_start..self.vocab_size).map(|id| (self.filler)(id - filler_start)))
            .collect();
        let control_ids = (0..self.before.len()).chain(after_start..self.vocab_size);
        let text_ids = self.before.len()..after_start;
        // Control tokens are in the BPE vocabulary too, as in Whisper's and
        // SmolLM2's own files: an added token whose id the model lacks is
        // renumbered when the tokenizer is read.
        let vocab: serde_json::Map<String, Value> = texts
            .zip(text_ids)
            .chain(controls.iter().cloned().zip(control_ids.clone()))
            .map(|(t, id)| (t, json!(id)))
            .collect();
        let added: Vec<Value> = control_ids.zip(&controls).map(|(id, t)| added_token(id, t)).collect();
        let byte_level =
            json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true });
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": byte_level,
            "post_processor": null,
            "decoder": byte_level,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab,
                "merges": merges.iter().map(|(a, b)| json!([a.to_string(), b.to_string()])).collect::<Vec<_>>(),
            }
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_decodes_and_text_round_trips() {
        let json = SyntheticVocab {
            before: &["<|s|>"],
            text_tokens: 300,
            after: &["<|e|>"],
            filler: &|i| format!("<|f{i}|>"),
            vocab_size: 310,
        }
        .to_json();
        let tokenizer = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(tokenizer.get_vocab_size(true), 310);
        assert_eq!(tokenizer.token_to_id("<|e|>"), Some(301));
        let ids = tokenizer.encode("héllo, wörld", false).unwrap().get_ids().to_vec();
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), "héllo, wörld");
        let missing: Vec<u32> = (0..310).filter(|&id| tokenizer.id_to_token(id).is_none()).collect();
        assert!(missing.is_empty(), "no token for ids {missing:?}");
    }
}
