//! Importer for Llama-family GGUF files (llama.cpp's format): dequantizes every
//! tensor, converts attention rows to the rotate-half layout kioku uses, and
//! rebuilds a Hugging Face `tokenizer.json` from the GGUF tokenizer metadata.

use super::ImportedLlm;
use crate::model::file::LLM;
use crate::model::llama::LlamaConfig;
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

pub fn import(path: &Path) -> Result<ImportedLlm> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let content = Content::read(&mut file).map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
    let meta = Meta(&content.metadata);
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        bail!("GGUF architecture `{arch}` is not supported (expected llama)");
    }
    let tokens = meta.get("tokenizer.ggml.tokens")?.to_vec()?.iter().map(|v| Ok(v.to_string()?.clone())).collect::<Result<Vec<_>>>()?;
    let heads = meta.usize("llama.attention.head_count")?;
    let hidden = meta.usize("llama.embedding_length")?;
    let kv_heads = meta.usize("llama.attention.head_count_kv").unwrap_or(heads);
    let has_output = content.tensor_infos.contains_key("output.weight");
    let eos = meta.usize("tokenizer.ggml.eos_token_id")? as u32;
    let mut eos_token_ids = vec![eos];
    // Chat models end a turn with their own marker, which may differ from EOS.
    for marker in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>"] {
        if let Some(id) = tokens.iter().position(|t| t == marker) {
            if !eos_token_ids.contains(&(id as u32)) {
                eos_token_ids.push(id as u32);
            }
        }
    }
    let config = LlamaConfig {
        hidden_size: hidden,
        intermediate_size: meta.usize("llama.feed_forward_length")?,
        num_hidden_layers: meta.usize("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim: meta.usize("llama.attention.key_length").unwrap_or(hidden / heads),
        vocab_size: tokens.len(),
        rms_norm_eps: meta.f64("llama.attention.layer_norm_rms_epsilon")?,
        rope_theta: meta.f64("llama.rope.freq_base").unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: meta.usize("llama.context_length")?,
        tie_word_embeddings: !has_output,
        bos_token_id: meta.usize("tokenizer.ggml.bos_token_id").ok().map(|v| v as u32),
        eos_token_ids,
    };

    let mut tensors = BTreeMap::new();
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else { bail!("unexpected GGUF tensor `{name}`") };
        let t = content.tensor(&mut file, name, &Device::Cpu)?.dequantize(&Device::Cpu)?;
        let t = match rope_heads(name, &config) {
            Some(heads) => unpermute(&t, heads)?,
            None => t,
        };
        tensors.insert(format!("{LLM}.{hf}"), t);
    }
    let chat_template = meta.string("tokenizer.chat_template").context("the GGUF file has no chat template")?;
    Ok(ImportedLlm { config, tokenizer: tokenizer_json(&meta, &tokens)?, chat_template, tensors })
}

/// The number of heads whose rows a GGUF tensor lays out for rope, for the
/// query and key projections (the tensors [`unpermute`] and [`permute`] apply to).
pub(crate) fn rope_heads(gguf: &str, config: &LlamaConfig) -> Option<usize> {
    if gguf.ends_with("attn_q.weight") {
        Some(config.num_attention_heads)
    } else if gguf.ends_with("attn_k.weight") {
        Some(config.num_key_value_heads)
    } else {
        None
    }
}

/// llama.cpp stores q/k rows interleaved per head (pairs); HF and kioku use
/// two halves. GGUF rows are (heads, head_dim/2, 2); swap to (heads, 2, head_dim/2).
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, rows / heads / 2, 2, cols))?.transpose(1, 2)?.reshape((rows, cols))?)
}

/// The inverse of [`unpermute`]: kioku's rows in llama.cpp's order, as its
/// HF -> GGUF converter writes them (and so, for a LoRA, the rows of B).
pub(crate) fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, 2, rows / heads / 2, cols))?.transpose(1, 2)?.reshape((rows, cols))?)
}

/// Whole-model tensors: (llama.cpp name, Hugging Face name).
const MODEL_TENSORS: [(&str, &str); 3] =
    [("token_embd.weight", "embed_tokens.weight"), ("output_norm.weight", "norm.weight"), ("output.weight", "lm_head.weight")];

/// Per-layer tensors, `blk.N.<gguf>` and `layers.N.<hf>`: (llama.cpp name, Hugging Face name).
const LAYER_TENSORS: [(&str, &str); 9] = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

fn hf_name(gguf: &str) -> Option<String> {
    rename(gguf, true)
}

/// llama.cpp's name for the Hugging Face tensor `hf` (e.g. `layers.3.self_attn.q_proj.weight`).
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    rename(hf, false)
}

fn rename(name: &str, from_gguf: bool) -> Option<String> {
    let oriented = |&(gguf, hf): &(&'static str, &'static str)| if from_gguf { (gguf, hf) } else { (hf, gguf) };
    if let Some((_, to)) = MODEL_TENSORS.iter().map(oriented).find(|(from, _)| *from == name) {
        return Some(to.into());
    }
    let (block_from, block_to) = if from_gguf { ("blk.", "layers.") } else { ("layers.", "blk.") };
    let (layer, part) = name.strip_prefix(block_from)?.split_once('.')?;
    let (_, to) = LAYER_TENSORS.iter().map(oriented).find(|(from, _)| *from == part)?;
    Some(format!("{block_to}{layer}.{to}"))
}

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
    let merges: Vec<String> =
        meta.get("tokenizer.ggml.merges")?.to_vec()?.iter().map(|v| Ok(v.to_string()?.clone())).collect::<Result<_>>()?;
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
        "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
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

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_interleaves_each_heads_halves_and_unpermute_inverts_it() {
        let (heads, head_dim, cols) = (3, 8, 5);
        let w = Tensor::arange(0f32, (heads * head_dim * cols) as f32, &Device::Cpu).unwrap().reshape((heads * head_dim, cols)).unwrap();
        let rows = permute(&w, heads).unwrap().to_vec2::<f32>().unwrap();
        let original = w.to_vec2::<f32>().unwrap();
        // llama.cpp row h·d + 2i + j holds HF row h·d + j·d/2 + i.
        for h in 0..heads {
            for i in 0..head_dim / 2 {
                for j in 0..2 {
                    assert_eq!(rows[h * head_dim + 2 * i + j], original[h * head_dim + j * head_dim / 2 + i]);
                }
            }
        }
        let back = unpermute(&permute(&w, heads).unwrap(), heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), original);
    }

    #[test]
    fn names_map_to_hf_llama_and_back() {
        assert_eq!(hf_name("blk.7.attn_q.weight").as_deref(), Some("layers.7.self_attn.q_proj.weight"));
        assert_eq!(hf_name("token_embd.weight").as_deref(), Some("embed_tokens.weight"));
        assert_eq!(hf_name("blk.7.unknown.weight"), None);
        assert_eq!(gguf_name("layers.7.mlp.down_proj.weight").as_deref(), Some("blk.7.ffn_down.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("blk.7.attn_q.weight"), None);
    }
}
