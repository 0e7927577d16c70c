//! The few ops that exist in two flavours: candle's fused kernels (fast, but they
//! return no gradient) and plain tensor-op versions that backpropagate. Every
//! model calls these instead of candle directly, so switching a model to the
//! training path is one flag, not a rewrite (docs/DESIGN.md, "Training through candle").

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor, D};

/// Which kernels a forward pass may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Path {
    /// Fused inference kernels; no gradients flow through them.
    #[default]
    Fast,
    /// Plain tensor ops only, so backward reaches every trainable tensor.
    Trainable,
}

pub fn softmax(xs: &Tensor, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::ops::softmax_last_dim(xs),
        Path::Trainable => candle_nn::ops::softmax(xs, D::Minus1),
    }
}

pub fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::ops::layer_norm(xs, weight, bias, eps),
        Path::Trainable => candle_nn::ops::layer_norm_slow(xs, weight, bias, eps),
    }
}

pub fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::ops::rms_norm(xs, weight, eps),
        Path::Trainable => candle_nn::ops::rms_norm_slow(xs, weight, eps),
    }
}

/// Rotate-half rotary embedding (the HF layout kioku uses everywhere).
/// `xs` is (batch, heads, seq, head_dim); `cos`/`sin` are (seq, head_dim/2).
pub fn rope(xs: &Tensor, cos: &Tensor, sin: &Tensor, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::rotary_emb::rope(&xs.contiguous()?, cos, sin),
        Path::Trainable => candle_nn::rotary_emb::rope_slow(xs, cos, sin),
    }
}

/// Scaled dot-product attention on (batch, heads, seq, head_dim) tensors.
/// `mask` is added to the scores (0 or -inf), broadcast over batch and heads.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, path: Path) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    // For a batch of one, candle's matmul reads K and V in place, whatever
    // their strides within a matrix: a cache's view, or K transposed. Copying
    // them first copied the whole cache at every decoding step (Whisper's
    // cross-attention: 1500 positions × 4 layers per token).
    let in_place = |t: Tensor| if t.dim(0)? == 1 { Ok(t) } else { t.contiguous() };
    let scores = (q.contiguous()?.matmul(&in_place(k.t()?)?)? * scale)?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    softmax(&scores, path)?.matmul(&in_place(v.clone())?)
}

/// Additive causal mask for `seq` new positions after `past` cached ones:
/// shape (seq, past + seq), 0 where a query may look, -inf elsewhere.
pub fn causal_mask(seq: usize, past: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    let total = past + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (seq, total), device)?.to_dtype(dtype)
}

/// `xs` (..., in) times the transpose of `w` (out, in), as one 2-D matmul
/// over all leading dims (no broadcast copies of the weight). A constant
/// weight under a trained input takes [`FrozenMatmul`] on the CPU.
pub(crate) fn matmul_t(xs: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut out_dims = xs.dims().to_vec();
    let rows = xs.reshape(((), xs.dim(D::Minus1)?))?;
    let ys = if xs.track_op() && !w.is_variable() && xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
        rows.contiguous()?.apply_op1(FrozenMatmul { weight: w.clone() })?
    } else {
        rows.matmul(&w.t()?)?
    };
    *out_dims.last_mut().expect("a linear layer's input has a feature dimension") = w.dim(0)?;
    ys.reshape(out_dims)
}

/// `x·Wᵀ` for a weight that does not train (a frozen base under a trained
/// projector or LoRA). candle's matmul backward also computes the weight's
/// gradient, a third of a backward pass's work, only to drop it; this op
/// returns the input's gradient alone. CPU f32 only; elsewhere plain matmul.
struct FrozenMatmul {
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("frozen-matmul needs contiguous f32 input");
        };
        let ys = Tensor::from_slice(&data[start..end], layout.shape(), &candle_core::Device::Cpu)?.matmul(&self.weight.t()?)?;
        let (ys_storage, ys_layout) = ys.storage_and_layout();
        match &*ys_storage {
            Storage::Cpu(cpu) => Ok((cpu.clone(), ys_layout.shape().clone())),
            _ => candle_core::bail!("frozen-matmul ran off the CPU"),
        }
    }

    fn bwd(&self, _xs: &Tensor, _ys: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}
