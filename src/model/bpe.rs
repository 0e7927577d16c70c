//! Byte-pair encoding, as the tokenizers crate's BPE model does it, read
//! from a `tokenizer.json` in one pass.
//!
//! The crate's own reader (`Tokenizer::from_bytes`) was most of kioku's load
//! time: it buffers the model section for an untagged enum, copies it into a
//! `serde_json::Value`, builds a map of 50 k owned strings and then, in
//! `BpeBuilder::build`, hashes three owned strings per merge. That took 31–35
//! ms of one of the two cores for the LLM's tokenizer alone (release). [`Bpe`]
//! keeps the vocabulary as one string with a table of ids hashed by their
//! text, and resolves each merge to ids as it is read, with no allocation per
//! token or per merge.
//!
//! Only the model is ours: the crate's `TokenizerImpl` still splits off added
//! tokens, pre-tokenizes, post-processes and decodes, each section read by the
//! crate's own code. [`Bpe`] merges exactly as the crate's BPE does (lowest
//! rank first, leftmost among equals); it refuses the options it does not
//! implement (dropout, byte fallback, subword prefixes and suffixes), which
//! no byte-level tokenizer kioku packs uses. `tests::encodes_and_decodes_as_the_crate_does`
//! checks it against the crate on both of the default model's tokenizers.

use anyhow::{anyhow, Result};
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BpeTrainer;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{Model, Token, TokenizerImpl};

/// A `tokenizer.json` tokenizer whose model is [`Bpe`].
pub type TextTokenizer =
    TokenizerImpl<Bpe, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

/// The tokenizer described by `json`.
pub fn tokenizer_from_json(json: &str) -> Result<TextTokenizer> {
    serde_json::from_str(json).map_err(|e| anyhow!(e))
}

/// Ids past this are taken for a damaged file, not allocated for.
const MAX_VOCABULARY: usize = 1 << 24;

/// (left id, right id) → (rank, merged id).
type Merges = hashbrown::HashMap<(u32, u32), (u32, u32)>;

/// A BPE vocabulary and its merges.
#[derive(Clone)]
pub struct Bpe {
    /// Every token's text, one after another.
    text: String,
    /// Where each id's token lies in `text`; `None` for ids the vocabulary skips.
    spans: Vec<Option<(u32, u32)>>,
    /// Every id, found by its token's text.
    ids: HashTable<u32>,
    hasher: DefaultHashBuilder,
    merges: Merges,
    /// The id of the token that stands for characters outside the vocabulary,
    /// and whether consecutive ones fuse into one.
    unknown: Option<(u32, bool)>,
    /// A whole pre-token found in the vocabulary is taken as it is, unmerged.
    ignore_merges: bool,
}

/// Every token's text one after another, with each token's id and span: read
/// without an allocation per token, 50 k of which made a map of owned strings
/// most of the reading's time.
#[derive(Default)]
pub(crate) struct VocabText {
    pub text: String,
    pub tokens: Vec<(u32, (u32, u32))>,
}

impl VocabText {
    /// Where each id's token lies in `text`, by id, in a table long enough for
    /// `more_ids` too (tokens the caller adds after the vocabulary).
    pub fn spans_by_id(&self, more_ids: impl IntoIterator<Item = u32>) -> Result<Vec<Option<(u32, u32)>>> {
        let ids = self.tokens.iter().map(|&(id, _)| id).chain(more_ids);
        let size = ids.map(|id| id as usize + 1).max().unwrap_or(0);
        if size > MAX_VOCABULARY {
            return Err(anyhow!("token id {} is past the largest vocabulary kioku reads", size - 1));
        }
        let mut spans = vec![None; size];
        for &(id, span) in &self.tokens {
            spans[id as usize] = Some(span);
        }
        Ok(spans)
    }
}

impl Bpe {
    fn text(&self, id: u32) -> Option<&str> {
        let (start, end) = (*self.spans.get(id as usize)?)?;
        Some(&self.text[start as usize..end as usize])
    }

    fn lookup(&self, token: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(token);
        self.ids.find(hash, |&id| self.text(id) == Some(token)).copied()
    }

    fn from_parts(section: Section) -> Result<Self> {
        let unsupported = [
            (section.dropout.is_some_and(|p| p > 0.0), "dropout"),
            (section.byte_fallback, "byte fallback"),
            (section.continuing_subword_prefix.is_some_and(|p| !p.is_empty()), "a continuing-subword prefix"),
            (section.end_of_word_suffix.is_some_and(|s| !s.is_empty()), "an end-of-word suffix"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(anyhow!("kioku reads BPE tokenizers without {what}"));
        }
        let vocab = section.vocab.ok_or_else(|| anyhow!("the BPE model has no vocabulary"))?;
        let spans = vocab.spans_by_id([])?;
        let (ids, hasher) = index_by_text(&vocab.text, &spans, &vocab.tokens);
        let mut bpe = Bpe {
            text: vocab.text,
            spans,
            ids,
            hasher,
            merges: Merges::new(),
            unknown: None,
            ignore_merges: section.ignore_merges,
        };
        if let Some(unknown) = &section.unk_token {
            let id =
                bpe.lookup(unknown).ok_or_else(|| anyhow!("the unknown token {unknown:?} is not in the vocabulary"))?;
            bpe.unknown = Some((id, section.fuse_unk));
        }
        if let Some(merges) = section.merges {
            let mut de = serde_json::Deserializer::from_str(merges.get());
            bpe.merges = de.deserialize_seq(MergesVisitor { bpe: &bpe }).map_err(|e| anyhow!("merges: {e}"))?;
        }
        Ok(bpe)
    }

    /// The ids of the byte-level `word`, each with its span in `word`, merged.
    fn merge(&self, word: &str) -> Vec<(u32, (usize, usize))> {
        // Each symbol: id, previous and next live symbol, byte length (0 once merged away).
        struct Symbol {
            id: u32,
            prev: usize,
            next: usize,
            len: usize,
        }
        const NONE: usize = usize::MAX;
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        // Whether the last symbol stands for unknown characters.
        let mut in_unknown_run = false;
        for (start, c) in word.char_indices() {
            let len = c.len_utf8();
            match self.lookup(&word[start..start + len]) {
                Some(id) => {
                    in_unknown_run = false;
                    symbols.push(Symbol { id, prev: NONE, next: NONE, len });
                }
                None => match self.unknown {
                    Some((_, true)) if in_unknown_run => symbols.last_mut().expect("a run").len += len,
                    Some((id, _)) => {
                        in_unknown_run = true;
                        symbols.push(Symbol { id, prev: NONE, next: NONE, len });
                    }
                    // No unknown token: the character is dropped, as the crate drops it.
                    None => {}
                },
            }
        }
        let count = symbols.len();
        for (i, symbol) in symbols.iter_mut().enumerate() {
            symbol.prev = if i == 0 { NONE } else { i - 1 };
            symbol.next = if i + 1 == count { NONE } else { i + 1 };
        }
        // Lowest rank first, then leftmost: entries left stale by earlier merges are skipped.
        let mut queue: BinaryHeap<Reverse<(u32, usize, u32)>> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, pair)| {
                self.merges.get(&(pair[0].id, pair[1].id)).map(|&(rank, id)| Reverse((rank, pos, id)))
            })
            .collect();
        while let Some(Reverse((_, pos, merged))) = queue.pop() {
            let next = symbols[pos].next;
            if symbols[pos].len == 0 || next == NONE {
                continue;
            }
            if self.merges.get(&(symbols[pos].id, symbols[next].id)).is_none_or(|&(_, id)| id != merged) {
                continue;
            }
            let (next_len, after) = (symbols[next].len, symbols[next].next);
            symbols[next].len = 0;
            let symbol = &mut symbols[pos];
            (symbol.id, symbol.len, symbol.next) = (merged, symbol.len + next_len, after);
            if after != NONE {
                symbols[after].prev = pos;
            }
            let prev = symbols[pos].prev;
            let neighbours = [(prev, pos), (pos, after)];
            for (left, right) in neighbours.into_iter().filter(|&(l, r)| l != NONE && r != NONE) {
                if let Some(&(rank, id)) = self.merges.get(&(symbols[left].id, symbols[right].id)) {
                    queue.push(Reverse((rank, left, id)));
                }
            }
        }
        let mut offset = 0;
        symbols
            .iter()
            .filter(|s| s.len > 0)
            .map(|s| {
                offset += s.len;
                (s.id, (offset - s.len, offset))
            })
            .collect()
    }
}

/// Every id of `tokens`, found by its text in `text`. A token listed twice
/// keeps its last id, as a map would.
fn index_by_text(
    text: &str,
    spans: &[Option<(u32, u32)>],
    tokens: &[(u32, (u32, u32))],
) -> (HashTable<u32>, DefaultHashBuilder) {
    let hasher = DefaultHashBuilder::default();
    let token = |id: u32| spans[id as usize].map(|(start, end)| &text[start as usize..end as usize]);
    let mut ids = HashTable::with_capacity(tokens.len());
    for &(id, (start, end)) in tokens {
        let wanted = &text[start as usize..end as usize];
        let hash = hasher.hash_one(wanted);
        match ids.find_mut(hash, |&other| token(other) == Some(wanted)) {
            Some(slot) => *slot = id,
            None => {
                ids.insert_unique(hash, id, |&other| hasher.hash_one(token(other).unwrap_or("")));
            }
        }
    }
    (ids, hasher)
}

impl Model for Bpe {
    // Never trained here; the crate's trainer only fills the trait.
    type Trainer = BpeTrainer;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        if sequence.is_empty() {
            return Ok(vec![]);
        }
        if self.ignore_merges {
            if let Some(id) = self.lookup(sequence) {
                return Ok(vec![Token::new(id, sequence.to_string(), (0, sequence.len()))]);
            }
        }
        let token =
            |(id, offsets): (u32, (usize, usize))| Token::new(id, self.text(id).unwrap_or("").to_string(), offsets);
        Ok(self.merge(sequence).into_iter().map(token).collect())
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.lookup(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.text(id).map(str::to_string)
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.ids.iter().filter_map(|&id| Some((self.text(id)?.to_string(), id))).collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.ids.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err("kioku's BPE is read from its model file, not saved".into())
    }

    fn get_trainer(&self) -> BpeTrainer {
        BpeTrainer::default()
    }
}

/// A BPE model section, as the crate's reader accepts it; the merges are kept
/// unread until the vocabulary, which may come after them, is in.
#[derive(Default)]
struct Section {
    dropout: Option<f32>,
    unk_token: Option<String>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    vocab: Option<VocabText>,
    merges: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for Bpe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SectionVisitor)
    }
}

struct SectionVisitor;

impl<'de> Visitor<'de> for SectionVisitor {
    type Value = Bpe;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a BPE model")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Bpe, M::Error> {
        let mut section = Section::default();
        let flag = |value: Option<bool>| value.unwrap_or(false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => {
                    let kind: String = map.next_value()?;
                    if kind != "BPE" {
                        return Err(de::Error::custom(format!("kioku reads BPE tokenizers, not {kind}")));
                    }
                }
                "dropout" => section.dropout = map.next_value()?,
                "unk_token" => section.unk_token = map.next_value()?,
                "continuing_subword_prefix" => section.continuing_subword_prefix = map.next_value()?,
                "end_of_word_suffix" => section.end_of_word_suffix = map.next_value()?,
                "fuse_unk" => section.fuse_unk = flag(map.next_value()?),
                "byte_fallback" => section.byte_fallback = flag(map.next_value()?),
                "ignore_merges" => section.ignore_merges = flag(map.next_value()?),
                "vocab" => section.vocab = Some(map.next_value()?),
                "merges" => section.merges = Some(map.next_value()?),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Bpe::from_parts(section).map_err(de::Error::custom)
    }
}

/// The merges, in rank order, as ids: `["left right", …]` or `[["left", "right"], …]`.
struct MergesVisitor<'a> {
    bpe: &'a Bpe,
}

impl<'de> Visitor<'de> for MergesVisitor<'_> {
    type Value = Merges;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of merges")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        // About one merge per token: sized once, not grown through rehashes.
        let mut merges = Merges::with_capacity(seq.size_hint().unwrap_or(self.bpe.ids.len()));
        let mut buffer = String::new();
        let mut rank = 0;
        while let Some(merge) = seq.next_element_seed(MergeSeed { buffer: &mut buffer })? {
            let Some(left_len) = merge else { continue };
            let (left, right) = buffer.split_at(left_len);
            let id = |token: &str| {
                self.bpe
                    .lookup(token)
                    .ok_or_else(|| de::Error::custom(format!("merge {}: {token:?} is not in the vocabulary", rank + 1)))
            };
            merges.insert((id(left)?, id(right)?), (rank, id(&buffer)?));
            rank += 1;
        }
        Ok(merges)
    }
}

/// One merge, read into `buffer` as left then right: gives the length of the
/// left part, or `None` for the `#version` line of the older layout.
struct MergeSeed<'b> {
    buffer: &'b mut String,
}

impl<'de> DeserializeSeed<'de> for MergeSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.buffer.clear();
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MergeSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a merge: \"left right\" or [\"left\", \"right\"]")
    }

    fn visit_str<E: de::Error>(self, line: &str) -> Result<Self::Value, E> {
        if line.starts_with("#version") {
            return Ok(None);
        }
        match line.split_once(' ') {
            Some((left, right)) if !right.contains(' ') => {
                self.buffer.push_str(left);
                self.buffer.push_str(right);
                Ok(Some(left.len()))
            }
            _ => Err(E::custom(format!("merge {line:?} is not two tokens"))),
        }
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let missing = || de::Error::custom("a merge pair has fewer than two tokens");
        seq.next_element_seed(AppendTo(self.buffer))?.ok_or_else(missing)?;
        let left_len = self.buffer.len();
        seq.next_element_seed(AppendTo(self.buffer))?.ok_or_else(missing)?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a merge pair has more than two tokens"));
        }
        Ok(Some(left_len))
    }
}

impl<'de> Deserialize<'de> for VocabText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(VocabVisitor)
    }
}

struct VocabVisitor;

impl<'de> Visitor<'de> for VocabVisitor {
    type Value = VocabText;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map from tokens to ids")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<VocabText, M::Error> {
        let mut vocab = VocabText::default();
        loop {
            let start = vocab.text.len() as u32;
            if map.next_key_seed(AppendTo(&mut vocab.text))?.is_none() {
                return Ok(vocab);
            }
            let id: u32 = map.next_value()?;
            vocab.tokens.push((id, (start, vocab.text.len() as u32)));
        }
    }
}

/// Reads a string onto the end of another.
struct AppendTo<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for AppendTo<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for AppendTo<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token")
    }

    fn visit_str<E: de::Error>(self, token: &str) -> Result<(), E> {
        self.0.push_str(token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::file::MappedModel;
    use rand::{Rng, SeedableRng};
    use tokenizers::Tokenizer;

    const TEXTS: [&str; 8] = [
        "What is the capital of France?",
        "  Hello,   world!\n\tTabs and  spaces ",
        "Ünïcödé — “quotes”, emoji 🎙️ and 日本語",
        "<|im_start|>user\nHi<|im_end|>\n<|startoftranscript|><|en|><|transcribe|><|notimestamps|>",
        "numbers 1234567890 and don't, can't, I'm",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!!!!!!!!!!!!!        x",
        "\u{0}\u{1}\u{7f} control characters and a lone \u{FFFD}",
        "",
    ];

    /// The same ids from both, with and without special tokens, and the same text back.
    fn assert_same(ours: &TextTokenizer, crate_own: &Tokenizer, text: &str) {
        for special in [false, true] {
            let ids = ours.encode(text, special).unwrap().get_ids().to_vec();
            assert_eq!(ids, crate_own.encode(text, special).unwrap().get_ids(), "{text:?}");
            assert_eq!(ours.decode(&ids, !special).unwrap(), crate_own.decode(&ids, !special).unwrap(), "{text:?}");
        }
    }

    /// Text from every character class the pre-tokenizer splits on, drawn at random.
    fn random_text(rng: &mut rand::rngs::StdRng) -> String {
        const PIECES: [&str; 16] =
            ["a", "e", "th", "ing", " ", "  ", "\n", "7", "42", "'s", "é", "日", "🎙", "—", ".", "<|im_end|>"];
        (0..rng.random_range(1..60)).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
    }

    #[test]
    fn encodes_and_decodes_as_the_crate_does() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kioku-tiny-en.safetensors");
        let header = MappedModel::open(&path).expect("the default model (`make model`)").header;
        // Real prose with code, tables and numbers: the repository's own docs.
        let docs = ["README.md", "docs/ARCHITECTURE.md", "docs/BENCHMARKS.md"]
            .map(|doc| std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for json in [&header.whisper_tokenizer, &header.llm_tokenizer] {
            let (ours, crate_own) =
                (tokenizer_from_json(json).unwrap(), Tokenizer::from_bytes(json.as_bytes()).unwrap());
            assert_eq!(ours.get_vocab_size(true), crate_own.get_vocab_size(true));
            assert_eq!(ours.get_vocab(true), crate_own.get_vocab(true));
            for id in [0, 1, 255, 256, 20_000, 49_151, 50_256, 60_000] {
                assert_eq!(ours.id_to_token(id), crate_own.id_to_token(id), "id {id}");
            }
            let texts =
                TEXTS.iter().copied().chain(docs.iter().map(String::as_str)).chain(docs.iter().flat_map(|d| d.lines()));
            for text in texts {
                assert_same(&ours, &crate_own, text);
            }
            for _ in 0..300 {
                assert_same(&ours, &crate_own, &random_text(&mut rng));
            }
        }
    }

    /// Merges listed before the vocabulary, as pairs, and an unknown token that fuses.
    #[test]
    fn reads_either_merge_layout_and_fuses_unknowns_as_the_crate_does() {
        let model = |merges: &str, fuse: bool| {
            format!(
                r#"{{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":{{"type":"Whitespace"}},
                "post_processor":null,"decoder":null,"model":{{"type":"BPE","merges":{merges},"fuse_unk":{fuse},
                "unk_token":"?","vocab":{{"a":0,"b":1,"c":2,"ab":3,"abc":4,"?":5,"bc":6}}}}}}"#
            )
        };
        for merges in [r#"[["a","b"],["ab","c"],["b","c"]]"#, r##"["#version: 0.2","a b","ab c","b c"]"##] {
            for fuse in [false, true] {
                let json = model(merges, fuse);
                let (ours, crate_own) = (tokenizer_from_json(&json).unwrap(), Tokenizer::from_bytes(&json).unwrap());
                for text in ["abc", "abcab xxbc", "cab", "bcbcb", "xyzabcxx q", ""] {
                    assert_same(&ours, &crate_own, text);
                }
            }
        }
    }

    #[test]
    fn what_it_cannot_read_is_a_clear_error() {
        let model = |section: &str| format!(r#"{{"version":"1.0","model":{{{section}}}}}"#);
        let error = |section: &str| tokenizer_from_json(&model(section)).err().expect(section).to_string();
        assert!(error(r#""type":"BPE","vocab":{"a":0},"merges":["a"]"#).contains("not two tokens"));
        assert!(error(r#""type":"BPE","vocab":{"a":0},"merges":["a b"]"#).contains("\"b\" is not in the vocabulary"));
        assert!(error(r#""type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1"#).contains("without dropout"));
        assert!(error(r#""type":"BPE","vocab":{"a":0},"merges":[],"byte_fallback":true"#).contains("byte fallback"));
        assert!(error(r#""type":"WordPiece","vocab":{"a":0}"#).contains("not WordPiece"));
        assert!(error(r#""type":"BPE","merges":[]"#).contains("no vocabulary"));
        assert!(error(r#""type":"BPE","vocab":{"a":4000000000},"merges":[]"#).contains("past the largest"));
        assert!(tokenizer_from_json("{").is_err());
    }
}
