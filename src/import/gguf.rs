//! Importer for Llama-family GGUF files (llama.cpp's format; `llama` and `qwen2`
//! architectures): dequantizes every tensor, converts attention rows to the
//! rotate-half layout kioku uses, and rebuilds a Hugging Face `tokenizer.json`
//! from the GGUF tokenizer metadata.

use super::ImportedLlm;
use crate::model::components::LLM;
use crate::model::gguf_layout::{hf_name, rope_heads, unpermute};
use crate::model::llama::LlamaConfig;
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

pub fn import(path: &Path) -> Result<ImportedLlm> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let content =
        Content::read(&mut file).map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
    let meta = Meta(&content.metadata);
    let arch = meta.string("general.architecture")?;
    // `qwen2` adds q/k/v biases, and keeps HF's rotate-half q/k rows (see [`rope_heads`]).
    let (qkv_bias, end_markers): (bool, &[&str]) = match arch.as_str() {
        "llama" => (false, &["<|im_end|>", "<|eot_id|>", "<|end_of_text|>"]),
        "qwen2" => (true, &["<|im_end|>", "<|endoftext|>"]),
        _ => bail!("GGUF architecture `{arch}` is not supported (expected llama or qwen2)"),
    };
    let key = |name: &str| format!("{arch}.{name}");
    let tokens = meta
        .get("tokenizer.ggml.tokens")?
        .to_vec()?
        .iter()
        .map(|v| Ok(v.to_string()?.clone()))
        .collect::<Result<Vec<_>>>()?;
    let heads = meta.usize(&key("attention.head_count"))?;
    let hidden = meta.usize(&key("embedding_length"))?;
    let kv_heads = meta.usize(&key("attention.head_count_kv")).unwrap_or(heads);
    let has_output = content.tensor_infos.contains_key("output.weight");
    let eos = meta.usize("tokenizer.ggml.eos_token_id")? as u32;
    let mut eos_token_ids = vec![eos];
    // Chat models end a turn with their own marker, which may differ from EOS.
    for marker in end_markers {
        if let Some(id) = tokens.iter().position(|t| t == marker) {
            if !eos_token_ids.contains(&(id as u32)) {
                eos_token_ids.push(id as u32);
            }
        }
    }
    let mut config = LlamaConfig {
        hidden_size: hidden,
        intermediate_size: meta.usize(&key("feed_forward_length"))?,
        num_hidden_layers: meta.usize(&key("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim: meta.usize(&key("attention.key_length")).unwrap_or(hidden / heads),
        vocab_size: tokens.len(),
        rms_norm_eps: meta.f64(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: meta.f64(&key("rope.freq_base")).unwrap_or(10_000.0),
        rope_scaling: None,
        rope_freq_factors: None,
        max_position_embeddings: meta.usize(&key("context_length"))?,
        tie_word_embeddings: !has_output,
        qkv_bias,
        bos_token_id: meta.usize("tokenizer.ggml.bos_token_id").ok().map(|v| v as u32),
        eos_token_ids,
    };

    let mut tensors = BTreeMap::new();
    for name in content.tensor_infos.keys() {
        let t = content.tensor(&mut file, name, &Device::Cpu)?.dequantize(&Device::Cpu)?;
        if name == ROPE_FREQS {
            config.rope_freq_factors = Some(t.to_dtype(DType::F64)?.to_vec1()?);
            continue;
        }
        let Some(hf) = hf_name(name) else { bail!("unexpected GGUF tensor `{name}`") };
        let t = match rope_heads(name, &config) {
            Some(heads) => unpermute(&t, heads)?,
            None => t,
        };
        tensors.insert(format!("{LLM}.{hf}"), t);
    }
    let chat_template = meta.string("tokenizer.chat_template").context("the GGUF file has no chat template")?;
    Ok(ImportedLlm { config, tokenizer: tokenizer_json(&meta, &tokens)?, chat_template, tensors })
}

/// Llama 3 frequency scaling as llama.cpp stores it: one divisor per rotary frequency.
const ROPE_FREQS: &str = "rope_freqs.weight";

struct Meta<'a>(&'a std::collections::HashMap<String, Value>);

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.0.get(key).with_context(|| format!("GGUF metadata has no `{key}`"))
    }
    fn string(&self, key: &str) -> Result<String> {
        Ok(self.get(key)?.to_string()?.clone())
    }
    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        Ok(v.to_u32().map(|x| x as usize).or_else(|_| v.to_u64().map(|x| x as usize))?)
    }
    fn f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        Ok(v.to_f32().map(f64::from).or_else(|_| v.to_f64())?)
    }
}

/// GGUF token types: control (3) and user-defined (4) tokens are matched whole.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Builds a byte-level BPE `tokenizer.json` equivalent to the GGUF tokenizer.
fn tokenizer_json(meta: &Meta, tokens: &[String]) -> Result<String> {
    let model = meta.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        bail!("GGUF tokenizer `{model}` is not supported (kioku reads byte-level BPE, `gpt2`)");
    }
    let merges: Vec<String> = meta
        .get("tokenizer.ggml.merges")?
        .to_vec()?
        .iter()
        .map(|v| Ok(v.to_string()?.clone()))
        .collect::<Result<_>>()?;
    let types: Vec<i32> = match meta.get("tokenizer.ggml.token_type") {
        Ok(v) => v.to_vec()?.iter().map(|t| t.to_i32()).collect::<candle_core::Result<_>>()?,
        Err(_) => vec![1; tokens.len()],
    };
    let added: Vec<_> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &t))| t == CONTROL || t == USER_DEFINED)
        .map(|(id, (content, &t))| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": t == CONTROL})
        })
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(id, t)| (t.clone(), json!(id))).collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    // llama.cpp names the pre-tokenizer regex; map the ones Llama-family models use.
    let pre = meta.string("tokenizer.ggml.pre").unwrap_or_else(|_| "gpt2".into());
    let pre_tokenizer = match pre.as_str() {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "llama-bpe" | "llama3" => split_then_bytes(LLAMA3_SPLIT),
        "qwen2" => split_then_bytes(QWEN2_SPLIT),
        _ => byte_level.clone(),
    };
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    Ok(serde_json::to_string(&tokenizer)?)
}

/// A regex split followed by byte-level mapping without GPT-2's own regex.
fn split_then_bytes(regex: &str) -> serde_json::Value {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's, but digits one at a time.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
