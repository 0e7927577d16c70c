//! The one linear layer every model uses, so that LoRA adapters attach to any
//! projection without touching model code.

use super::adapter_scope;
use super::ops::matmul_t;
use super::lora::LoraLayer;
use super::q8::{LowRank, Q8Matrix};
use super::weights::{Stored, Weights};
use anyhow::{bail, Result};
use candle_core::{Module, Tensor};
use std::sync::Arc;

/// How the weight is held: dense (trainable, any device and dtype) or as
/// 8-bit blocks (CPU inference only; no gradient flows through it).
#[derive(Debug, Clone)]
enum Kernel {
    Dense(Tensor),
    Quantized(Arc<Q8Matrix>),
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
    /// A weight stored quantized stays quantized on CPU unless the weights are
    /// [`Weights::dense_only`]; other devices get it dense.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let kernel = match w.take_stored("weight", (out_dim, in_dim))? {
            Stored::Quantized(q) if w.device().is_cpu() && !w.dense_only() => Kernel::Quantized(Arc::new(q)),
            Stored::Quantized(q) => Kernel::Dense(q.dequantize(w.device())?.to_dtype(w.dtype())?),
            Stored::Dense(t) => Kernel::Dense(t),
        };
        let bias = if bias { Some(w.take("bias", out_dim)?) } else { None };
        let adapters = w.lora_layers(in_dim, out_dim)?;
        if matches!(kernel, Kernel::Quantized(_)) && adapters.iter().any(LoraLayer::is_trainable) {
            // No gradient flows back through the q8 kernel to earlier layers.
            bail!("`{}` is quantized; training adapters needs dense weights (Weights::with_dense_only)", w.module_name());
        }
        Ok(Self { kernel, bias, adapters, module: Some(w.module_name().into()) })
    }

    /// A bias-free layer over an existing dense weight (out, in), such as tied embeddings.
    pub fn from_dense(weight: Tensor) -> Self {
        Self { kernel: Kernel::Dense(weight), bias: None, adapters: Vec::new(), module: None }
    }

    /// Loads a bias that some checkpoints store and others omit (Whisper's key
    /// projection: HF drops it, CTranslate2 stores zeros).
    pub fn load_optional_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = w.take("weight", (out_dim, in_dim))?;
        let (bias, adapters) = (w.take_optional("bias", out_dim)?, w.lora_layers(in_dim, out_dim)?);
        Ok(Self { kernel: Kernel::Dense(weight), bias, adapters, module: Some(w.module_name().into()) })
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
            .collect();
        // The q8 kernel adds fixed adapters inside its own op (see `LowRank`).
        let fused: Option<Vec<(&LowRank, f32)>> = match &self.kernel {
            Kernel::Quantized(_) => active.iter().map(|(a, scale)| Some((a.low_rank()?, *scale as f32))).collect(),
            Kernel::Dense(_) => None,
        };
        let mut ys = match &self.kernel {
            Kernel::Dense(w) => matmul_t(xs, w)?,
            Kernel::Quantized(q) => {
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
/// the embeddings themselves). Returns `None` for the head when the embeddings
/// serve as the head; otherwise the table only serves row lookups and is kept
/// in its stored dtype (f16 halves its memory).
pub fn load_embeddings_and_head(
    w: &Weights,
    embeddings: &str,
    head: &str,
    vocab: usize,
    dim: usize,
    tied: bool,
) -> Result<(Tensor, Option<Linear>)> {
    let head_weight = format!("{head}.weight");
    let stored_head = w.contains(&head_weight);
    let head = if !tied || (stored_head && !w.dense_only()) {
        Some(Linear::load(&w.pp(head), dim, vocab, false)?)
    } else {
        if stored_head {
            w.take_stored(&head_weight, (vocab, dim))?;
        }
        None
    };
    let table = format!("{embeddings}.weight");
    let table = if head.is_some() { w.take_as_stored(&table, (vocab, dim))? } else { w.take(&table, (vocab, dim))? };
    Ok((table, head))
}
