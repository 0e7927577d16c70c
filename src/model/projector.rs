//! Ultravox-style projector: maps Whisper encoder frames into the LLM's
//! embedding space so speech can be spliced straight into the prompt.
//! Stack 8 frames (50 Hz -> 6.25 tokens/s), RMSNorm, linear, SwiGLU (halves the
//! width), RMSNorm, linear to the LLM width.

use super::linear::Linear;
use super::norm::RmsNorm;
use super::ops::Path;
use super::weights::Weights;
use anyhow::Result;
use candle_core::{Module, Tensor, D};
use serde::{Deserialize, Serialize};

const RMS_EPS: f32 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectorConfig {
    pub stack_factor: usize,
    pub input_dim: usize,
    pub hidden_dim: usize,
    pub output_dim: usize,
}

impl ProjectorConfig {
    /// Number of LLM positions `frames` encoder frames become.
    pub fn output_len(&self, frames: usize) -> usize {
        frames.div_ceil(self.stack_factor)
    }
}

#[derive(Debug, Clone)]
pub struct Projector {
    ln_pre: RmsNorm,
    linear_1: Linear,
    ln_mid: RmsNorm,
    linear_2: Linear,
    config: ProjectorConfig,
}

impl Projector {
    /// Loads the tensors under `projector.`.
    pub fn load(w: &Weights, cfg: &ProjectorConfig) -> Result<Self> {
        let stacked = cfg.input_dim * cfg.stack_factor;
        Ok(Self {
            ln_pre: RmsNorm::load(&w.pp("ln_pre"), stacked, RMS_EPS)?,
            linear_1: Linear::load(&w.pp("linear_1"), stacked, cfg.hidden_dim, false)?,
            ln_mid: RmsNorm::load(&w.pp("ln_mid"), cfg.hidden_dim / 2, RMS_EPS)?,
            linear_2: Linear::load(&w.pp("linear_2"), cfg.hidden_dim / 2, cfg.output_dim, false)?,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// Encoder output (batch, frames, input_dim) -> (batch, ceil(frames/8), output_dim).
    pub fn forward(&self, encoder_out: &Tensor, path: Path) -> Result<Tensor> {
        let (b, frames, d) = encoder_out.dims3()?;
        let stack = self.config.stack_factor;
        let padded = self.config.output_len(frames) * stack;
        let xs = encoder_out.pad_with_zeros(1, 0, padded - frames)?.reshape((b, padded / stack, stack * d))?;
        let xs = self.linear_1.forward(&self.ln_pre.forward(&xs, path)?)?;
        let half = xs.dim(D::Minus1)? / 2;
        let xs = (candle_nn::ops::silu(&xs.narrow(D::Minus1, 0, half)?)? * xs.narrow(D::Minus1, half, half)?)?;
        Ok(self.linear_2.forward(&self.ln_mid.forward(&xs, path)?)?)
    }
}
