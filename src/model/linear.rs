//! The one linear layer every model uses, so that LoRA adapters can later be
//! attached to any projection without touching model code.

use super::weights::Weights;
use anyhow::Result;
use candle_core::{Module, Tensor};

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Loads `{name}.weight` (out, in) and, when `bias` is set, `{name}.bias`.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = w.take("weight", (out_dim, in_dim))?;
        let bias = if bias { Some(w.take("bias", out_dim)?) } else { None };
        Ok(Self::new(weight, bias))
    }

    /// Loads a bias that some checkpoints store and others omit (Whisper's key
    /// projection: HF drops it, CTranslate2 stores zeros).
    pub fn load_optional_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = w.take("weight", (out_dim, in_dim))?;
        Ok(Self::new(weight, w.take_optional("bias", out_dim)?))
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // (..., in) x (in, out): broadcast the transposed weight over batch dims.
        let ys = match xs.dims() {
            [b1, b2, _, _] => xs.matmul(&self.weight.broadcast_left((*b1, *b2))?.t()?)?,
            [b, _, _] => xs.matmul(&self.weight.broadcast_left(*b)?.t()?)?,
            _ => xs.matmul(&self.weight.t()?)?,
        };
        match &self.bias {
            Some(bias) => ys.broadcast_add(bias),
            None => Ok(ys),
        }
    }
}
