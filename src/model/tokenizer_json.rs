//! Reading a Hugging Face `tokenizer.json` whose model is BPE, faster than
//! `Tokenizer::from_bytes`.
//!
//! `from_bytes` reads the model section three times over: serde buffers it
//! for an untagged enum, copies it into a `serde_json::Value`, and only then
//! builds the BPE from that, with 50 k vocabulary entries and 50 k merges each
//! time. That was most of kioku's load time (perf: about 30 % of the CPU of a
//! `kioku ask --text`). Here the vocabulary and the merges are read once,
//! straight into their final types, which cut that command's load from a
//! median of 210 ms to 160 ms (release, ten interleaved runs each). Everything
//! else still goes through `from_bytes`, so normalizers, pre-tokenizers,
//! decoders and added tokens keep the crate's own reading. A model other than
//! BPE falls back to `from_bytes`. `tests::reads_as_from_bytes_does` checks
//! that both readings tokenize alike.

use ahash::AHashMap;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use tokenizers::models::bpe::{BpeBuilder, BPE};
use tokenizers::{AddedToken, Tokenizer};

/// A BPE model section, as the crate's own reader accepts it.
#[derive(Deserialize)]
struct BpeSection {
    #[serde(rename = "type")]
    kind: Option<String>,
    dropout: Option<f32>,
    unk_token: Option<String>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    fuse_unk: Option<bool>,
    byte_fallback: Option<bool>,
    ignore_merges: Option<bool>,
    vocab: AHashMap<String, u32>,
    merges: Box<RawValue>,
}

/// A BPE with no vocabulary, which `from_bytes` builds in no time.
const EMPTY_BPE: &str = r#"{"type":"BPE","vocab":{},"merges":[]}"#;

/// The tokenizer described by `json`.
pub fn tokenizer_from_json(json: &str) -> Result<Tokenizer> {
    // The top level, each section unread.
    let mut sections: BTreeMap<String, &RawValue> = serde_json::from_str(json)?;
    let bpe = sections.get("model").and_then(|model| serde_json::from_str::<BpeSection>(model.get()).ok());
    let Some(bpe) = bpe.filter(BpeSection::is_bpe) else {
        return Tokenizer::from_bytes(json.as_bytes()).map_err(|e| anyhow!(e));
    };
    let added = sections.remove("added_tokens");
    let empty = RawValue::from_string(EMPTY_BPE.to_string())?;
    sections.insert("model".to_string(), &empty);
    let mut tokenizer = Tokenizer::from_bytes(serde_json::to_string(&sections)?).map_err(|e| anyhow!(e))?;
    tokenizer.with_model(bpe.build()?);
    // As `from_bytes` does: added tokens after the model, which may already hold them.
    if let Some(added) = added {
        let added: Vec<AddedToken> = serde_json::from_str(added.get()).context("added_tokens")?;
        tokenizer.add_tokens(added).map_err(|e| anyhow!(e))?;
    }
    Ok(tokenizer)
}

impl BpeSection {
    fn is_bpe(&self) -> bool {
        self.kind.as_deref().is_none_or(|k| k == "BPE")
    }

    fn build(self) -> Result<BPE> {
        let merges = match serde_json::from_str::<Vec<(String, String)>>(self.merges.get()) {
            Ok(pairs) => pairs,
            // The older layout: "left right" strings.
            Err(_) => serde_json::from_str::<Vec<String>>(self.merges.get())
                .context("merges are neither pairs nor strings")?
                .iter()
                .filter(|line| !line.starts_with("#version"))
                .enumerate()
                .map(|(rank, line)| match line.split(' ').collect::<Vec<_>>()[..] {
                    [left, right] => Ok((left.to_string(), right.to_string())),
                    _ => bail!("merge {} is not two tokens: {line:?}", rank + 1),
                })
                .collect::<Result<_>>()?,
        };
        // Each option the file sets; the builder's defaults for the rest.
        let builder = BPE::builder().vocab_and_merges(self.vocab, merges);
        let builder = self.dropout.into_iter().fold(builder, BpeBuilder::dropout);
        let builder = self.unk_token.into_iter().fold(builder, BpeBuilder::unk_token);
        let builder = self.continuing_subword_prefix.into_iter().fold(builder, BpeBuilder::continuing_subword_prefix);
        let builder = self.end_of_word_suffix.into_iter().fold(builder, BpeBuilder::end_of_word_suffix);
        let builder = self.fuse_unk.into_iter().fold(builder, BpeBuilder::fuse_unk);
        let builder = self.byte_fallback.into_iter().fold(builder, BpeBuilder::byte_fallback);
        let builder = self.ignore_merges.into_iter().fold(builder, BpeBuilder::ignore_merges);
        builder.build().map_err(|e| anyhow!(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::file::MappedModel;

    const TEXTS: [&str; 6] = [
        "What is the capital of France?",
        "  Hello,   world!\n\tTabs and  spaces ",
        "Ünïcödé — “quotes”, emoji 🎙️ and 日本語",
        "<|im_start|>user\nHi<|im_end|>\n<|startoftranscript|><|en|><|transcribe|><|notimestamps|>",
        "numbers 1234567890 and don't, can't, I'm",
        "",
    ];

    #[test]
    fn reads_as_from_bytes_does() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kioku-tiny-en.safetensors");
        let header = MappedModel::open(&path).expect("the default model (`make model`)").header;
        for json in [&header.whisper_tokenizer, &header.llm_tokenizer] {
            let (fast, reference) =
                (tokenizer_from_json(json).unwrap(), Tokenizer::from_bytes(json.as_bytes()).unwrap());
            assert_eq!(fast.get_vocab_size(true), reference.get_vocab_size(true));
            assert_eq!(fast.get_vocab(true), reference.get_vocab(true));
            for text in TEXTS {
                for special in [false, true] {
                    let ids = |t: &Tokenizer| t.encode(text, special).unwrap().get_ids().to_vec();
                    assert_eq!(ids(&fast), ids(&reference), "{text:?}");
                    let decoded = |t: &Tokenizer| t.decode(&ids(&reference), !special).unwrap();
                    assert_eq!(decoded(&fast), decoded(&reference), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn a_broken_model_section_is_an_error() {
        let json = r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":["a"]}}"#;
        assert!(tokenizer_from_json(json).is_err());
        assert!(tokenizer_from_json("{").is_err());
    }
}
