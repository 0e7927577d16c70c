//! The one linear layer every model uses, so that LoRA adapters attach to any
//! projection without touching model code.

use super::adapter_scope;
use super::lora::LoraLayer;
use super::mapped::Embedding;
use super::ops::matmul_t;
use super::packed::{LowRank, PackedMatrix};
use super::weights::{Claimed, Weights};
use anyhow::{bail, Result};
use candle_core::{Module, Tensor};
use std::sync::Arc;

/// How the weight is held: dense (trainable, any device and dtype) or packed
/// as stored (Q8_0 blocks or f16, CPU inference only; no gradient flows through it).
#[derive(Debug, Clone)]
enum Kernel {
    Dense(Tensor),
    Packed(Arc<PackedMatrix>),
}

#[derive(Debug, Clone)]
pub struct Linear {
    kernel: Kernel,
    bias: Option<Tensor>,
    /// LoRA terms added to the output (see [`super::lora`]).
    adapters: Vec<LoraLayer>,
    /// The module name, under which adapters switched on per call find this
    /// layer ([`super::adapter_scope`]); None for a layer no adapter can target.
    module: Option<Arc<str>>,
}

impl Linear {
    /// Loads `{name}.weight` (out, in) and, when `bias` is set, `{name}.bias`.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let bias = if bias { Some(w.take("bias", out_dim)?) } else { None };
        Self::load_with_bias(w, in_dim, out_dim, bias)
    }

    /// Loads a bias that some checkpoints store and others omit (Whisper's key
    /// projection: HF drops it, CTranslate2 stores zeros).
    pub fn load_optional_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::load_with_bias(w, in_dim, out_dim, w.take_optional("bias", out_dim)?)
    }

    /// The weight is packed or dense as [`Weights::take_matrix`] decides.
    fn load_with_bias(w: &Weights, in_dim: usize, out_dim: usize, bias: Option<Tensor>) -> Result<Self> {
        let kernel = match w.take_matrix("weight", out_dim, in_dim)? {
            Claimed::Packed(q) => Kernel::Packed(Arc::new(q)),
            Claimed::Dense(t) => Kernel::Dense(t),
        };
        let adapters = w.lora_layers(in_dim, out_dim)?;
        if matches!(kernel, Kernel::Packed(_)) && adapters.iter().any(LoraLayer::is_trainable) {
            // No gradient flows back through the packed kernel to earlier layers.
            bail!(
                "`{}` is packed for inference; training adapters needs dense weights (Weights::with_dense_only)",
                w.module_name()
            );
        }
        Ok(Self { kernel, bias, adapters, module: Some(w.module_name().into()) })
    }

    /// Whether adapters applied at load add to this layer (not those switched on per call).
    pub fn has_adapters(&self) -> bool {
        !self.adapters.is_empty()
    }

    /// A bias-free layer over an existing dense weight (out, in), such as tied embeddings.
    pub fn from_dense(weight: Tensor) -> Self {
        Self { kernel: Kernel::Dense(weight), bias: None, adapters: Vec::new(), module: None }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let scoped = if self.module.is_some() { adapter_scope::active() } else { Vec::new() };
        let active: Vec<(&LoraLayer, f64)> = self
            .adapters
            .iter()
            .map(|a| (a, 1.0))
            .chain(scoped.iter().filter_map(|(adapter, scale)| Some((adapter.layer(self.module.as_deref()?)?, *scale))))
            .filter(|(a, _)| a.acts_now())
            .collect();
        // The packed kernel adds fixed adapters inside its own op (see `LowRank`).
        let fused: Option<Vec<(&LowRank, f32)>> = match &self.kernel {
            Kernel::Packed(_) => active.iter().map(|(a, scale)| Some((a.low_rank()?, *scale as f32))).collect(),
            Kernel::Dense(_) => None,
        };
        let mut ys = match &self.kernel {
            Kernel::Dense(w) => matmul_t(xs, w)?,
            Kernel::Packed(q) => {
                let xs32 = xs.to_dtype(candle_core::DType::F32)?;
                match &fused {
                    Some(terms) => q.forward_with(&xs32, terms)?,
                    None => q.forward(&xs32)?,
                }
                .to_dtype(xs.dtype())?
            }
        };
        if let Some(bias) = &self.bias {
            ys = ys.broadcast_add(bias)?;
        }
        if fused.is_none() {
            for (adapter, scale) in active {
                ys = (ys + adapter.forward(xs, scale)?)?;
            }
        }
        Ok(ys)
    }
}

/// Loads a token embedding table and the output head. A tied head may still be
/// stored separately, as a quantized copy of the embeddings (`kioku pack
/// --quantize`): it is used for inference, dropped for training (which works on
/// the embeddings themselves). When the table serves only row lookups it stays
/// in the mapped file ([`Weights::take_table`]); when it is also the head it is
/// loaded as a dense weight.
pub fn load_embeddings_and_head(
    w: &Weights,
    embeddings: &str,
    head: &str,
    vocab: usize,
    dim: usize,
    tied: bool,
) -> Result<(Embedding, Linear)> {
    let head_weight = format!("{head}.weight");
    let stored_head = w.contains(&head_weight);
    let table = format!("{embeddings}.weight");
    if !tied || (stored_head && !w.dense_only()) {
        let head = Linear::load(&w.pp(head), dim, vocab, false)?;
        return Ok((w.take_table(&table, (vocab, dim))?, head));
    }
    if stored_head {
        w.discard(&head_weight, (vocab, dim))?;
    }
    let table = w.take(&table, (vocab, dim))?;
    Ok((Embedding::Loaded(table.clone()), Linear::from_dense(table)))
}
