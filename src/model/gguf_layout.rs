//! How llama.cpp lays out a Llama-family LLM in GGUF files, against the
//! Hugging Face layout kioku keeps: tensor names both ways, and the order of
//! the query and key rows. The GGUF importer reads models with it, and the
//! GGUF LoRA export writes adapters with it.

use super::llama::LlamaConfig;
use anyhow::Result;
use candle_core::Tensor;

/// llama.cpp's architecture for a kioku LLM. Among the families kioku
/// imports, only Qwen2 has q/k/v biases (a Llama with biases is refused).
pub(crate) fn architecture(config: &LlamaConfig) -> &'static str {
    if config.qkv_bias {
        "qwen2"
    } else {
        "llama"
    }
}

/// The number of heads whose rows a GGUF tensor lays out for rope: llama.cpp's
/// converter interleaves the query and key rows of `llama` models (the tensors
/// [`unpermute`] and [`permute`] apply to); `qwen2` keeps HF's rotate-half layout.
pub(crate) fn rope_heads(gguf: &str, config: &LlamaConfig) -> Option<usize> {
    if architecture(config) != "llama" {
        None
    } else if gguf.ends_with("attn_q.weight") {
        Some(config.num_attention_heads)
    } else if gguf.ends_with("attn_k.weight") {
        Some(config.num_key_value_heads)
    } else {
        None
    }
}

/// llama.cpp stores q/k rows interleaved per head (pairs); HF and kioku use
/// two halves. GGUF rows are (heads, head_dim/2, 2); swap to (heads, 2, head_dim/2).
pub(crate) fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
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
const MODEL_TENSORS: [(&str, &str); 3] = [
    ("token_embd.weight", "embed_tokens.weight"),
    ("output_norm.weight", "norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// Per-layer tensors, `blk.N.<gguf>` and `layers.N.<hf>`: (llama.cpp name, Hugging Face name).
const LAYER_TENSORS: [(&str, &str); 12] = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

pub(crate) fn hf_name(gguf: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn permute_interleaves_each_heads_halves_and_unpermute_inverts_it() {
        let (heads, head_dim, cols) = (3, 8, 5);
        let w = Tensor::arange(0f32, (heads * head_dim * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((heads * head_dim, cols))
            .unwrap();
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
        assert_eq!(hf_name("blk.7.attn_v.bias").as_deref(), Some("layers.7.self_attn.v_proj.bias"));
        assert_eq!(hf_name("token_embd.weight").as_deref(), Some("embed_tokens.weight"));
        assert_eq!(hf_name("blk.7.unknown.weight"), None);
        assert_eq!(gguf_name("layers.7.mlp.down_proj.weight").as_deref(), Some("blk.7.ffn_down.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("blk.7.attn_q.weight"), None);
    }
}
