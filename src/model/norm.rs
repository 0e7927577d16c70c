//! Normalisation layers, dispatching to fused or trainable kernels by [`Path`].

use super::ops::{self, Path};
use super::weights::Weights;
use anyhow::Result;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(w: &Weights, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self { weight: w.take("weight", dim)?, bias: w.take("bias", dim)?, eps })
    }

    pub fn forward(&self, xs: &Tensor, path: Path) -> candle_core::Result<Tensor> {
        ops::layer_norm(xs, &self.weight, &self.bias, self.eps, path)
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(w: &Weights, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self { weight: w.take("weight", dim)?, eps })
    }

    pub fn forward(&self, xs: &Tensor, path: Path) -> candle_core::Result<Tensor> {
        ops::rms_norm(xs, &self.weight, self.eps, path)
    }
}
