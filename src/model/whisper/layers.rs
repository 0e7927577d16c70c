//! Building blocks shared by the Whisper encoder and decoder.

use crate::model::linear::Linear;
use crate::model::ops::{self, Path};
use crate::model::weights::Weights;
use anyhow::Result;
use candle_core::{Module, Tensor};

pub(crate) const LAYER_NORM_EPS: f32 = 1e-5;

/// Multi-head attention with Whisper's projections (the key has no bias).
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) out_proj: Linear,
    heads: usize,
}

impl Attention {
    pub(crate) fn load(w: &Weights, dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            q_proj: Linear::load(&w.pp("q_proj"), dim, dim, true)?,
            k_proj: Linear::load_optional_bias(&w.pp("k_proj"), dim, dim)?,
            v_proj: Linear::load(&w.pp("v_proj"), dim, dim, true)?,
            out_proj: Linear::load(&w.pp("out_proj"), dim, dim, true)?,
            heads,
        })
    }

    /// (batch, seq, dim) -> (batch, heads, seq, head_dim)
    pub(crate) fn split_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, d) = xs.dims3()?;
        xs.reshape((b, t, self.heads, d / self.heads))?.transpose(1, 2)
    }

    /// Attends from `queries` to already projected and split keys/values.
    pub(crate) fn attend(
        &self,
        queries: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        path: Path,
    ) -> candle_core::Result<Tensor> {
        self.attend_with(queries, |q| ops::attention(q, k, v, mask, path))
    }

    /// Attends, unmasked, to keys/values held as consecutive segments of
    /// positions ([`ops::attention_over`]).
    pub(crate) fn attend_over(
        &self,
        queries: &Tensor,
        segments: &[ops::KvSegment],
        path: Path,
    ) -> candle_core::Result<Tensor> {
        self.attend_with(queries, |q| ops::attention_over(q, segments, path))
    }

    fn attend_with(
        &self,
        queries: &Tensor,
        attend: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let q = self.split_heads(&self.q_proj.forward(queries)?)?;
        let (b, _, t, _) = q.dims4()?;
        let out = attend(&q)?.transpose(1, 2)?.reshape((b, t, ()))?;
        self.out_proj.forward(&out)
    }

    /// Whether adapters applied at load change the key or value projection.
    pub(crate) fn projects_kv_with_adapters(&self) -> bool {
        self.k_proj.has_adapters() || self.v_proj.has_adapters()
    }

    pub(crate) fn project_kv(&self, xs: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((self.split_heads(&self.k_proj.forward(xs)?)?, self.split_heads(&self.v_proj.forward(xs)?)?))
    }
}

/// The two-layer GELU MLP of every Whisper block.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
}

impl Mlp {
    pub(crate) fn load(w: &Weights, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            fc1: Linear::load(&w.pp("fc1"), dim, hidden, true)?,
            fc2: Linear::load(&w.pp("fc2"), hidden, dim, true)?,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(xs)?.gelu_erf()?)
    }
}
