//! Llama-family decoder (SmolLM2, Llama 3.x, Qwen2/Qwen2.5): grouped-query
//! attention, rotate-half RoPE, RMSNorm, SwiGLU MLP, optionally tied output
//! embeddings and q/k/v biases.

use super::linear::{load_embeddings_and_head, Linear};
use super::mapped::Embedding;
use super::norm::RmsNorm;
use super::ops::{self, Path};
use super::weights::Weights;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::kv_cache::KvCache;
use serde::{Deserialize, Serialize};

/// Llama 3.x long-context frequency scaling (`rope_type: llama3` in HF configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Per-frequency divisors of the inverse frequencies, as llama.cpp stores
    /// Llama 3 scaling in GGUF files (`rope_freqs.weight`) instead of its parameters.
    /// Absent keys keep the identity of models packed before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f64>>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Whether the query, key and value projections have biases (Qwen2); the
    /// output projection never does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    pub bos_token_id: Option<u32>,
    /// Tokens that end the assistant's turn.
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    fn inverse_frequencies(&self) -> Vec<f64> {
        let inv: Vec<f64> =
            (0..self.head_dim / 2).map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim as f64)).collect();
        let inv = match &self.rope_freq_factors {
            Some(factors) => inv.iter().zip(factors).map(|(f, d)| f / d).collect(),
            None => inv,
        };
        let Some(s) = &self.rope_scaling else { return inv };
        let original = s.original_max_position_embeddings as f64;
        let (low_wavelen, high_wavelen) = (original / s.low_freq_factor, original / s.high_freq_factor);
        inv.into_iter()
            .map(|freq| {
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wavelen {
                    freq
                } else if wavelen > low_wavelen {
                    freq / s.factor
                } else {
                    let smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * freq / s.factor + smooth * freq
                }
            })
            .collect()
    }
}

/// Longest context kioku precomputes rotary tables for; far beyond a spoken turn.
const MAX_CONTEXT: usize = 8192;

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// Positions a KV cache holds before it grows by as many again. 64 rather than
/// 256 keeps a short answer's cache at 2.9 MB instead of 11.8 (SmolLM2, f32);
/// each growth copies the cache, which did not show in decoding at context 512
/// (`examples/anchor_probe --depths 512`, 4 alternations with 256: medians 82.1
/// and 83.1 tok/s).
const CACHE_POSITIONS: usize = 64;

/// Key/value cache of one conversation; cleared between questions.
pub struct LlamaCache {
    layers: Vec<KvCache>,
    position: usize,
}

impl LlamaCache {
    /// An independent copy, with room to grow. Appending writes into the cache's
    /// storage in place, so a shallow clone would let two conversations clobber each other.
    pub fn duplicate(&self) -> Result<Self> {
        self.copy_with_capacity(CACHE_POSITIONS)
    }

    /// An independent copy that holds only the positions already cached: for a
    /// prefix kept to be duplicated, where 256 positions per layer held 11 MB
    /// for SmolLM2's 30-odd-token prompt prefix.
    pub fn compacted(&self) -> Result<Self> {
        self.copy_with_capacity(self.position.max(1))
    }

    fn copy_with_capacity(&self, positions: usize) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                let mut copy = KvCache::new(2, positions);
                if let (Some(k), Some(v)) = (layer.k()?, layer.v()?) {
                    copy.append(&k.contiguous()?, &v.contiguous()?)?;
                }
                Ok(copy)
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers, position: self.position })
    }
}

/// Keys and values of a prompt prefix that every training example shares,
/// computed once without gradient: examples then run only their own tokens.
pub struct FrozenPrefix {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl LlamaCache {
    /// The cached keys and values as a prefix for [`Llama::forward_after_prefix`].
    pub fn to_frozen_prefix(&self) -> Result<FrozenPrefix> {
        let layers = self
            .layers
            .iter()
            .map(|layer| match (layer.k()?, layer.v()?) {
                (Some(k), Some(v)) => Ok((k.detach(), v.detach())),
                _ => bail!("the cache is empty"),
            })
            .collect::<Result<_>>()?;
        Ok(FrozenPrefix { layers, len: self.position })
    }
}

/// What every layer's attention sees before the new positions.
enum Pasts<'a> {
    Nothing,
    Cache(&'a mut [KvCache]),
    Frozen(&'a [(Tensor, Tensor)]),
}

/// What one layer's attention sees before the new positions.
enum Past<'a> {
    Nothing,
    Cache(&'a mut KvCache),
    Frozen(&'a (Tensor, Tensor)),
}

impl Attention {
    fn forward(
        &self,
        xs: &Tensor,
        rope: (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        past: Past,
        path: Path,
    ) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let split = |x: Tensor, heads| x.reshape((b, t, heads, self.head_dim))?.transpose(1, 2);
        let q = ops::rope(&split(self.q_proj.forward(xs)?, self.heads)?, rope.0, rope.1, path)?;
        let k = ops::rope(&split(self.k_proj.forward(xs)?, self.kv_heads)?, rope.0, rope.1, path)?;
        let v = split(self.v_proj.forward(xs)?, self.kv_heads)?;
        let (k, v) = match past {
            Past::Cache(cache) => cache.append(&k.contiguous()?, &v.contiguous()?)?,
            Past::Frozen((past_k, past_v)) => {
                let widen = |p: &Tensor| p.broadcast_as((b, p.dim(1)?, p.dim(2)?, p.dim(3)?));
                (Tensor::cat(&[&widen(past_k)?, &k], 2)?, Tensor::cat(&[&widen(past_v)?, &v], 2)?)
            }
            Past::Nothing => (k, v),
        };
        // Grouped-query attention without copying K/V per query head: the
        // query heads sharing a K/V head become extra rows of one matmul.
        let groups = self.heads / self.kv_heads;
        let q = q.contiguous()?.reshape((b, self.kv_heads, groups * t, self.head_dim))?;
        let mask = mask.map(|m| m.repeat((groups, 1))).transpose()?;
        let out = ops::attention(&q, &k, &v, mask.as_ref(), path)?.reshape((b, self.heads, t, self.head_dim))?;
        Ok(self.o_proj.forward(&out.transpose(1, 2)?.reshape((b, t, ()))?)?)
    }
}

impl Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(xs)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    /// The output projection; with tied weights it shares `embed_tokens`.
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    config: LlamaConfig,
}

impl Llama {
    /// Loads the tensors under `llm.` (HF Llama names without `model.`).
    pub fn load(w: &Weights, cfg: &LlamaConfig) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        if !cfg.num_attention_heads.is_multiple_of(cfg.num_key_value_heads) {
            bail!(
                "{} attention heads cannot share {} key/value heads",
                cfg.num_attention_heads,
                cfg.num_key_value_heads
            );
        }
        if cfg.rope_freq_factors.as_ref().is_some_and(|f| f.len() != hd / 2) {
            bail!("the model has {} rotary frequencies but not as many frequency factors", hd / 2);
        }
        let eps = cfg.rms_norm_eps as f32;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let w = w.pp(format!("layers.{i}"));
                let (a, m) = (w.pp("self_attn"), w.pp("mlp"));
                Ok(Block {
                    input_layernorm: RmsNorm::load(&w.pp("input_layernorm"), h, eps)?,
                    self_attn: Attention {
                        q_proj: Linear::load(&a.pp("q_proj"), h, cfg.num_attention_heads * hd, cfg.qkv_bias)?,
                        k_proj: Linear::load(&a.pp("k_proj"), h, cfg.num_key_value_heads * hd, cfg.qkv_bias)?,
                        v_proj: Linear::load(&a.pp("v_proj"), h, cfg.num_key_value_heads * hd, cfg.qkv_bias)?,
                        o_proj: Linear::load(&a.pp("o_proj"), cfg.num_attention_heads * hd, h, false)?,
                        heads: cfg.num_attention_heads,
                        kv_heads: cfg.num_key_value_heads,
                        head_dim: hd,
                    },
                    post_attention_layernorm: RmsNorm::load(&w.pp("post_attention_layernorm"), h, eps)?,
                    mlp: Mlp {
                        gate_proj: Linear::load(&m.pp("gate_proj"), h, cfg.intermediate_size, false)?,
                        up_proj: Linear::load(&m.pp("up_proj"), h, cfg.intermediate_size, false)?,
                        down_proj: Linear::load(&m.pp("down_proj"), cfg.intermediate_size, h, false)?,
                    },
                })
            })
            .collect::<Result<_>>()?;
        let (embed_tokens, lm_head) =
            load_embeddings_and_head(w, "embed_tokens", "lm_head", cfg.vocab_size, h, cfg.tie_word_embeddings)?;
        let (cos, sin) = rotary_tables(cfg, w.dtype(), w.device())?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(&w.pp("norm"), h, eps)?,
            lm_head,
            cos,
            sin,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn new_cache(&self) -> LlamaCache {
        LlamaCache { layers: (0..self.layers.len()).map(|_| KvCache::new(2, CACHE_POSITIONS)).collect(), position: 0 }
    }

    /// Token ids (batch, seq) -> embeddings (batch, seq, hidden).
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        Ok(self.embed_tokens.lookup(tokens, self.cos.dtype())?.reshape((b, t, ()))?)
    }

    /// Runs the decoder stack on input embeddings placed after the cached
    /// positions; returns the final normalised hidden states (batch, seq, hidden).
    /// Without a cache the sequence starts at position 0 (the training path).
    pub fn forward_embeds(&self, embeds: &Tensor, cache: Option<&mut LlamaCache>, path: Path) -> Result<Tensor> {
        match cache {
            Some(cache) => {
                let hidden = self.run_layers(embeds, cache.position, path, Pasts::Cache(&mut cache.layers))?;
                cache.position += embeds.dim(1)?;
                Ok(hidden)
            }
            None => self.run_layers(embeds, 0, path, Pasts::Nothing),
        }
    }

    /// Like [`Llama::forward_embeds`] without a cache, but after a shared,
    /// gradient-free prefix (broadcast over the batch).
    pub fn forward_after_prefix(&self, embeds: &Tensor, prefix: &FrozenPrefix, path: Path) -> Result<Tensor> {
        self.run_layers(embeds, prefix.len, path, Pasts::Frozen(&prefix.layers))
    }

    fn run_layers(&self, embeds: &Tensor, past: usize, path: Path, mut pasts: Pasts) -> Result<Tensor> {
        let (_, t, _) = embeds.dims3()?;
        if past + t > MAX_CONTEXT.min(self.config.max_position_embeddings) {
            bail!(
                "the conversation exceeds the model's context of {} tokens",
                MAX_CONTEXT.min(self.config.max_position_embeddings)
            );
        }
        let rope = (self.cos.narrow(0, past, t)?, self.sin.narrow(0, past, t)?);
        let mask = (t > 1).then(|| ops::causal_mask(t, past, embeds.dtype(), embeds.device())).transpose()?;
        let mut xs = embeds.clone();
        for (i, block) in self.layers.iter().enumerate() {
            let h = block.input_layernorm.forward(&xs, path)?;
            let layer_past = match &mut pasts {
                Pasts::Nothing => Past::Nothing,
                Pasts::Cache(layers) => Past::Cache(&mut layers[i]),
                Pasts::Frozen(layers) => Past::Frozen(&layers[i]),
            };
            xs = (xs + block.self_attn.forward(&h, (&rope.0, &rope.1), mask.as_ref(), layer_past, path)?)?;
            let h = block.post_attention_layernorm.forward(&xs, path)?;
            xs = (&xs + block.mlp.forward(&h)?)?;
        }
        Ok(self.norm.forward(&xs, path)?)
    }

    /// Hidden states (batch, seq, hidden) -> logits (batch, seq, vocab).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }

    /// Logits of the last position only, as f32 (1-D, vocab): what generation needs.
    pub fn next_token_logits(&self, embeds: &Tensor, cache: &mut LlamaCache) -> Result<Tensor> {
        let hidden = self.forward_embeds(embeds, Some(cache), Path::Fast)?;
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        Ok(self.logits(&last)?.flatten_all()?.to_dtype(DType::F32)?)
    }
}

fn rotary_tables(cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let positions = MAX_CONTEXT.min(cfg.max_position_embeddings);
    let inv = cfg.inverse_frequencies();
    let angles: Vec<f32> = (0..positions).flat_map(|p| inv.iter().map(move |f| (p as f64 * f) as f32)).collect();
    let angles = Tensor::from_vec(angles, (positions, inv.len()), device)?;
    Ok((angles.cos()?.to_dtype(dtype)?, angles.sin()?.to_dtype(dtype)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> LlamaConfig {
        LlamaConfig {
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            vocab_size: 49152,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            rope_freq_factors: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            qkv_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// Model identities hash this serialization: fields added for other
    /// families must not appear for a SmolLM2 config, or every adapter and
    /// projector made before them would be refused.
    #[test]
    fn llama_config_serializes_as_before_families_were_added() {
        let keys: Vec<String> = serde_json::to_value(smollm2()).unwrap().as_object().unwrap().keys().cloned().collect();
        let before = [
            "bos_token_id",
            "eos_token_ids",
            "head_dim",
            "hidden_size",
            "intermediate_size",
            "max_position_embeddings",
            "num_attention_heads",
            "num_hidden_layers",
            "num_key_value_heads",
            "rms_norm_eps",
            "rope_scaling",
            "rope_theta",
            "tie_word_embeddings",
            "vocab_size",
        ];
        assert_eq!(keys, before);
        let mut qwen = smollm2();
        qwen.qkv_bias = true;
        qwen.rope_freq_factors = Some(vec![1.0; 32]);
        let round_trip: LlamaConfig = serde_json::from_value(serde_json::to_value(&qwen).unwrap()).unwrap();
        assert_eq!(round_trip, qwen);
    }

    #[test]
    fn frequency_factors_divide_the_inverse_frequencies() {
        let mut cfg = smollm2();
        let plain = cfg.inverse_frequencies();
        cfg.rope_freq_factors = Some((0..32).map(|i| 1.0 + i as f64).collect());
        let scaled = cfg.inverse_frequencies();
        for (i, (p, s)) in plain.iter().zip(&scaled).enumerate() {
            assert!((p / (1.0 + i as f64) - s).abs() <= 1e-15 * p, "frequency {i}: {p} / {} != {s}", 1 + i);
        }
    }
}
