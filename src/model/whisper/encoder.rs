//! Whisper audio encoder: two convolutions, sinusoidal positions and pre-norm
//! transformer blocks. Runs on the clip's real length, not a padded 30 s window.

use super::layers::{Attention, Mlp, LAYER_NORM_EPS};
use super::WhisperConfig;
use crate::audio::{mel::HOP_LENGTH, MelExtractor};
use crate::model::mapped::Embedding;
use crate::model::norm::LayerNorm;
use crate::model::ops::Path;
use crate::model::weights::Weights;
use anyhow::{bail, Result};
use candle_core::Tensor;

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    mlp: Mlp,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn load(w: &Weights, cfg: &WhisperConfig) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::load(&w.pp("self_attn"), cfg.d_model, cfg.encoder_heads)?,
            self_attn_layer_norm: LayerNorm::load(&w.pp("self_attn_layer_norm"), cfg.d_model, LAYER_NORM_EPS)?,
            mlp: Mlp::load(w, cfg.d_model, cfg.ffn_dim())?,
            final_layer_norm: LayerNorm::load(&w.pp("final_layer_norm"), cfg.d_model, LAYER_NORM_EPS)?,
        })
    }

    fn forward(&self, xs: &Tensor, path: Path) -> candle_core::Result<Tensor> {
        let h = self.self_attn_layer_norm.forward(xs, path)?;
        let (k, v) = self.self_attn.project_kv(&h)?;
        let xs = (xs + self.self_attn.attend(&h, &k, &v, None, path)?)?;
        let h = self.final_layer_norm.forward(&xs, path)?;
        xs + self.mlp.forward(&h)?
    }
}

#[derive(Debug, Clone)]
pub struct WhisperEncoder {
    conv1_weight: Tensor,
    conv1_bias: Tensor,
    conv2_weight: Tensor,
    conv2_bias: Tensor,
    /// Read a clip's rows at a time: most clips use a few hundred of the 1500.
    positions: Embedding,
    layers: Vec<EncoderLayer>,
    layer_norm: LayerNorm,
    config: WhisperConfig,
}

impl WhisperEncoder {
    /// Loads the tensors under `encoder.` (HF Whisper names without `model.`).
    pub fn load(w: &Weights, cfg: &WhisperConfig) -> Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            conv1_weight: w.take("conv1.weight", (d, cfg.n_mels, 3))?,
            conv1_bias: w.take("conv1.bias", d)?,
            conv2_weight: w.take("conv2.weight", (d, d, 3))?,
            conv2_bias: w.take("conv2.bias", d)?,
            positions: w.take_table("embed_positions.weight", (cfg.max_source_positions, d))?,
            layers: (0..cfg.encoder_layers)
                .map(|i| EncoderLayer::load(&w.pp(format!("layers.{i}")), cfg))
                .collect::<Result<_>>()?,
            layer_norm: LayerNorm::load(&w.pp("layer_norm"), d, LAYER_NORM_EPS)?,
            config: cfg.clone(),
        })
    }

    /// Log-mel (batch, n_mels, frames) -> hidden states (batch, ceil(frames/2), d_model).
    pub fn forward(&self, mel: &Tensor, path: Path) -> Result<Tensor> {
        let (_, n_mels, frames) = mel.dims3()?;
        if n_mels != self.config.n_mels {
            bail!("the encoder expects {} mel bins, got {n_mels}", self.config.n_mels);
        }
        if frames == 0 || frames > self.config.max_mel_frames() {
            bail!("the encoder takes 1 to {} mel frames (30 s), got {frames}", self.config.max_mel_frames());
        }
        let mel = mel.to_dtype(self.conv1_weight.dtype())?;
        let xs = mel
            .conv1d(&self.conv1_weight, 1, 1, 1, 1)?
            .broadcast_add(&self.conv1_bias.reshape((1, (), 1))?)?
            .gelu_erf()?;
        let xs = xs
            .conv1d(&self.conv2_weight, 1, 2, 1, 1)?
            .broadcast_add(&self.conv2_bias.reshape((1, (), 1))?)?
            .gelu_erf()?;
        let xs = xs.transpose(1, 2)?;
        // Slice the position table to the clip's length instead of padding audio to 30 s.
        let positions = self.positions.lookup(&Tensor::arange(0, xs.dim(1)? as u32, xs.device())?, xs.dtype())?;
        let mut xs = xs.broadcast_add(&positions)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, path)?;
        }
        Ok(self.layer_norm.forward(&xs, path)?)
    }

    /// The encoding of 30 s of silence (max_source_positions, d_model), which
    /// the ASR decoder pads a short clip's encoding with
    /// ([`super::AsrDecoder::transcribe`]).
    pub fn encode_silence(&self, path: Path) -> Result<Tensor> {
        let silence = vec![0f32; self.config.max_mel_frames() * HOP_LENGTH];
        let mel = MelExtractor::new(self.config.n_mels).compute(&silence).to_tensor(self.conv1_weight.device())?;
        Ok(self.forward(&mel, path)?.squeeze(0)?)
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }
}
