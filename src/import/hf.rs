//! Importer for Hugging Face checkpoint directories (`config.json`,
//! `*.safetensors`, `tokenizer.json`), for Whisper and Llama-family models
//! (Llama, Qwen2), so a user with a bigger checkpoint (Whisper small, Llama 3.2
//! 1B, Qwen2.5 0.5B) can pack it too.

use super::ctranslate2::{read_json, read_text};
use super::{ImportedLlm, ImportedWhisper};
use crate::model::components::{ASR_DECODER, ENCODER, LLM};
use crate::model::llama::{Llama3RopeScaling, LlamaConfig};
use crate::model::whisper::WhisperConfig;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Every tensor of the checkpoint's `*.safetensors` files (the shards named by
/// `model.safetensors.index.json` when there is one), as f32.
fn read_tensors(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let index = read_json(&dir.join("model.safetensors.index.json")).ok();
    let mut files: Vec<_> = match index.as_ref().and_then(|i| i["weight_map"].as_object()) {
        Some(map) => map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect(),
        None => std::fs::read_dir(dir)
            .with_context(|| format!("cannot read directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect(),
    };
    files.sort();
    files.dedup();
    if files.is_empty() {
        bail!("{} has no .safetensors weights", dir.display());
    }
    let mut out = BTreeMap::new();
    for f in files {
        let tensors =
            candle_core::safetensors::load(&f, &Device::Cpu).with_context(|| format!("cannot read {}", f.display()))?;
        for (name, t) in tensors {
            if out.insert(name.clone(), t.to_dtype(DType::F32)?).is_some() {
                bail!("tensor `{name}` appears in more than one .safetensors file in {}", dir.display());
            }
        }
    }
    Ok(out)
}

fn usize_field(config: &Value, key: &str) -> Result<usize> {
    config[key].as_u64().map(|v| v as usize).with_context(|| format!("config.json has no integer `{key}`"))
}

fn ids(v: &Value) -> Vec<u32> {
    match v {
        Value::Array(a) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
        Value::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        _ => vec![],
    }
}

pub fn import_whisper(dir: &Path) -> Result<ImportedWhisper> {
    let c = read_json(&dir.join("config.json"))?;
    if c["model_type"] != "whisper" {
        bail!("{} is not a Whisper checkpoint (model_type {})", dir.display(), c["model_type"]);
    }
    // Suppression lists live in generation_config.json in newer exports.
    let generation = read_json(&dir.join("generation_config.json")).unwrap_or(Value::Null);
    let list = |key: &str| if generation[key].is_array() { ids(&generation[key]) } else { ids(&c[key]) };
    let config = WhisperConfig {
        n_mels: usize_field(&c, "num_mel_bins")?,
        d_model: usize_field(&c, "d_model")?,
        encoder_layers: usize_field(&c, "encoder_layers")?,
        encoder_heads: usize_field(&c, "encoder_attention_heads")?,
        decoder_layers: usize_field(&c, "decoder_layers")?,
        decoder_heads: usize_field(&c, "decoder_attention_heads")?,
        vocab_size: usize_field(&c, "vocab_size")?,
        max_source_positions: usize_field(&c, "max_source_positions")?,
        max_target_positions: usize_field(&c, "max_target_positions")?,
        suppress_tokens: list("suppress_tokens"),
        begin_suppress_tokens: list("begin_suppress_tokens"),
    };
    let mut tensors = BTreeMap::new();
    for (name, t) in read_tensors(dir)? {
        let renamed = if let Some(rest) = name.strip_prefix("model.encoder.") {
            format!("{ENCODER}.{rest}")
        } else if let Some(rest) = name.strip_prefix("model.decoder.") {
            format!("{ASR_DECODER}.{rest}")
        } else if name == "proj_out.weight" {
            continue; // tied to the decoder token embeddings
        } else {
            bail!("unexpected tensor `{name}` in Whisper checkpoint {}", dir.display());
        };
        tensors.insert(renamed, t);
    }
    Ok(ImportedWhisper { config, tokenizer: read_text(&dir.join("tokenizer.json"))?, tensors })
}

pub fn import_llama(dir: &Path) -> Result<ImportedLlm> {
    let c = read_json(&dir.join("config.json"))?;
    // Qwen2 is a Llama with q/k/v biases; its sliding window is off in released checkpoints.
    let qkv_bias = match c["model_type"].as_str() {
        Some("llama") if c["attention_bias"] == true => {
            bail!("{}: Llama attention biases are not supported", dir.display())
        }
        Some("llama") => false,
        Some("qwen2") if c["use_sliding_window"] == true => {
            bail!("{}: sliding-window attention is not supported", dir.display())
        }
        Some("qwen2") => true,
        _ => bail!("{} is not a Llama-family checkpoint (model_type {})", dir.display(), c["model_type"]),
    };
    let heads = usize_field(&c, "num_attention_heads")?;
    let hidden = usize_field(&c, "hidden_size")?;
    // transformers 5 writes `rope_parameters` (with the theta inside); 4.x wrote
    // `rope_theta` and `rope_scaling`, with `type` for `rope_type` in older files.
    let rope = if c["rope_parameters"].is_object() { &c["rope_parameters"] } else { &c["rope_scaling"] };
    let rope_theta = rope["rope_theta"].as_f64().or_else(|| c["rope_theta"].as_f64()).unwrap_or(10_000.0);
    let rope_scaling = match rope["rope_type"].as_str().or_else(|| rope["type"].as_str()) {
        None | Some("default") => None,
        Some("llama3") => Some(serde_json::from_value::<Llama3RopeScaling>(rope.clone())?),
        Some(_) => bail!("rope scaling {rope} is not supported"),
    };
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
    // Chat checkpoints often list their end-of-turn token only here.
    let generation = read_json(&dir.join("generation_config.json")).unwrap_or(Value::Null);
    let mut eos_token_ids = ids(&c["eos_token_id"]);
    for id in ids(&generation["eos_token_id"]) {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }
    let chat_template = tokenizer_config["chat_template"]
        .as_str()
        .map(str::to_string)
        .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok())
        .with_context(|| {
            format!("{} has no chat template (tokenizer_config.json or chat_template.jinja)", dir.display())
        })?;
    let config = LlamaConfig {
        hidden_size: hidden,
        intermediate_size: usize_field(&c, "intermediate_size")?,
        num_hidden_layers: usize_field(&c, "num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: usize_field(&c, "num_key_value_heads").unwrap_or(heads),
        head_dim: usize_field(&c, "head_dim").unwrap_or(hidden / heads),
        vocab_size: usize_field(&c, "vocab_size")?,
        rms_norm_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        rope_theta,
        rope_scaling,
        rope_freq_factors: None,
        max_position_embeddings: usize_field(&c, "max_position_embeddings")?,
        tie_word_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false),
        qkv_bias,
        bos_token_id: c["bos_token_id"].as_u64().map(|v| v as u32),
        eos_token_ids,
    };
    let mut tensors = BTreeMap::new();
    for (name, t) in read_tensors(dir)? {
        if name.ends_with(".rotary_emb.inv_freq") {
            continue; // recomputed from rope_theta
        }
        let rest = match name.strip_prefix("model.") {
            Some(rest) => rest,
            None if name == "lm_head.weight" => "lm_head.weight",
            None => bail!("unexpected tensor `{name}` in Llama checkpoint {}", dir.display()),
        };
        if rest == "lm_head.weight" && config.tie_word_embeddings {
            continue;
        }
        tensors.insert(format!("{LLM}.{rest}"), t);
    }
    Ok(ImportedLlm { config, tokenizer: read_text(&dir.join("tokenizer.json"))?, chat_template, tensors })
}
