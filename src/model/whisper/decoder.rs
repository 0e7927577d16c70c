//! Whisper text decoder: causal self-attention over transcript tokens plus
//! cross-attention to the encoder output. Greedy transcription lives here too.

use super::layers::{Attention, Mlp, LAYER_NORM_EPS};
use super::{WhisperConfig, WhisperSpecialTokens};
use crate::model::adapter_scope;
use crate::model::linear::{load_embeddings_and_head, Linear};
use crate::model::mapped::Embedding;
use crate::model::norm::LayerNorm;
use crate::model::ops::{self, KvSegment, Path};
use crate::model::weights::{ClaimedLater, Weights};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Module, Tensor, D};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    mlp: Mlp,
    final_layer_norm: LayerNorm,
}

/// Per-utterance decoder state: cross-attention keys/values computed once from
/// the encoder output, and the growing self-attention cache.
pub struct DecoderState {
    /// Per layer, the segments of positions cross-attention reads in order:
    /// the encoder output's, then (padded) the stored silence's beyond it.
    cross_kv: Vec<Vec<KvSegment>>,
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    position: usize,
}

#[derive(Debug, Clone)]
pub struct AsrDecoder {
    embed_tokens: Embedding,
    /// The output projection: a quantized copy of the embeddings stored
    /// separately (`kioku pack --quantize`), else the embeddings themselves.
    proj_out: Linear,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    layer_norm: LayerNorm,
    /// Encoder output for 30 s of silence (max_source_positions, d_model); see
    /// [`AsrDecoder::transcribe`]. Read only to project it afresh: a file's stored
    /// keys and values ([`SILENCE_KV`]) serve transcription.
    silence_context: Embedding,
    silence_kv: OnceLock<Vec<KvSegment>>,
    /// The silence context's cross-attention keys and values as `kioku pack` stored them
    /// ([`SILENCE_KV`]), read on the first transcription; None when the file has none or an
    /// adapter applied at load changes the projections that made them.
    stored_silence_kv: Arc<Mutex<Option<ClaimedLater>>>,
    config: WhisperConfig,
}

/// OpenAI Whisper's threshold for treating a window as silence.
const NO_SPEECH_THRESHOLD: f32 = 0.6;

/// Name of the precomputed silence encoding, stored with the decoder's tensors.
pub const SILENCE_CONTEXT: &str = "silence_context";

/// Where `kioku pack` stores the silence context's cross-attention keys and values, per layer:
/// `silence_kv.{layer}.key` and `.value`, each (1, heads, max_source_positions, head_dim).
/// Projecting them takes about 1.8 GMAC, which the first transcription in a process paid
/// (about 30 ms, release, 2 cores); read from the file, they cost a copy.
pub const SILENCE_KV: &str = "silence_kv";

impl AsrDecoder {
    /// Loads the tensors under `asr_decoder.` (HF Whisper decoder names).
    pub fn load(w: &Weights, cfg: &WhisperConfig) -> Result<Self> {
        let d = cfg.d_model;
        let norm = |name: &str| LayerNorm::load(&w.pp(name), d, LAYER_NORM_EPS);
        let layers: Vec<DecoderLayer> = (0..cfg.decoder_layers)
            .map(|i| {
                let w = w.pp(format!("layers.{i}"));
                let norm = |name: &str| LayerNorm::load(&w.pp(name), d, LAYER_NORM_EPS);
                Ok(DecoderLayer {
                    self_attn: Attention::load(&w.pp("self_attn"), d, cfg.decoder_heads)?,
                    self_attn_layer_norm: norm("self_attn_layer_norm")?,
                    encoder_attn: Attention::load(&w.pp("encoder_attn"), d, cfg.decoder_heads)?,
                    encoder_attn_layer_norm: norm("encoder_attn_layer_norm")?,
                    mlp: Mlp::load(&w, d, cfg.ffn_dim())?,
                    final_layer_norm: norm("final_layer_norm")?,
                })
            })
            .collect::<Result<_>>()?;
        // Whisper's output projection is always the token embeddings (tied).
        let (embed_tokens, proj_out) =
            load_embeddings_and_head(w, "embed_tokens", "proj_out", cfg.vocab_size, d, true)?;
        let stored_silence_kv = w.pp(SILENCE_KV).claim_all();
        let adapted = layers.iter().any(|l| l.encoder_attn.projects_kv_with_adapters());
        let stored_silence_kv = (!adapted && !stored_silence_kv.is_empty()).then_some(stored_silence_kv);
        Ok(Self {
            embed_tokens,
            proj_out,
            positions: w.take("embed_positions.weight", (cfg.max_target_positions, d))?,
            layers,
            layer_norm: norm("layer_norm")?,
            silence_context: w.take_table(SILENCE_CONTEXT, (cfg.max_source_positions, d))?,
            silence_kv: OnceLock::new(),
            stored_silence_kv: Arc::new(Mutex::new(stored_silence_kv)),
            config: cfg.clone(),
        })
    }

    /// Prepares cross-attention for one encoder output (batch, frames, d_model).
    pub fn start(&self, encoder_out: &Tensor) -> Result<DecoderState> {
        let cross_kv = self
            .layers
            .iter()
            .map(|l| {
                let (k, v) = l.encoder_attn.project_kv(encoder_out)?;
                Ok(vec![KvSegment::Tensors(k, v)])
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(DecoderState { cross_kv, self_kv: vec![None; self.layers.len()], position: 0 })
    }

    /// Cross-attention keys/values of the stored silence encoding, projected
    /// afresh: with trainable adapters on the cross-attention they carry
    /// gradients. Project once per batch and pass to [`AsrDecoder::start_padded`].
    pub fn project_silence(&self) -> Result<Vec<KvSegment>> {
        Ok(self.project_silence_tensors()?.into_iter().map(|(k, v)| KvSegment::Tensors(k, v)).collect())
    }

    fn project_silence_tensors(&self) -> Result<Vec<(Tensor, Tensor)>> {
        let rows = Tensor::arange(0, self.config.max_source_positions as u32, self.positions.device())?;
        let context = self.silence_context.lookup(&rows, self.positions.dtype())?.unsqueeze(0)?;
        Ok(self.layers.iter().map(|l| l.encoder_attn.project_kv(&context)).collect::<candle_core::Result<_>>()?)
    }

    /// Like [`AsrDecoder::start`] for one clip's encoding (batch 1), extended
    /// up to 30 s with `silence` (from [`AsrDecoder::project_silence`]), as
    /// [`AsrDecoder::transcribe`] sees a clip.
    pub fn start_padded(&self, encoder_out: &Tensor, silence: &[KvSegment]) -> Result<DecoderState> {
        let frames = encoder_out.dim(1)?;
        let total = self.config.max_source_positions;
        if frames >= total {
            return self.start(encoder_out);
        }
        let cross_kv = self
            .layers
            .iter()
            .zip(silence)
            .map(|(layer, silence)| {
                let (k, v) = layer.encoder_attn.project_kv(encoder_out)?;
                Ok(vec![KvSegment::Tensors(k, v), silence.tail(frames)?])
            })
            .collect::<Result<_>>()?;
        Ok(DecoderState { cross_kv, self_kv: vec![None; self.layers.len()], position: 0 })
    }

    /// Feeds `tokens` (batch, seq) after those already in `state`; returns
    /// logits (batch, seq, vocab). Output projection is tied to the embeddings.
    pub fn forward(&self, tokens: &Tensor, state: &mut DecoderState, path: Path) -> Result<Tensor> {
        let (_, seq) = tokens.dims2()?;
        if state.position + seq > self.config.max_target_positions {
            bail!("transcript longer than the decoder's {} positions", self.config.max_target_positions);
        }
        let positions = self.positions.narrow(0, state.position, seq)?;
        let xs = self.embed_tokens.lookup(tokens, positions.dtype())?;
        let mut xs = xs.reshape((tokens.dim(0)?, seq, ()))?.broadcast_add(&positions)?;
        let mask = (seq > 1).then(|| ops::causal_mask(seq, state.position, xs.dtype(), xs.device())).transpose()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.self_attn_layer_norm.forward(&xs, path)?;
            let (k, v) = layer.self_attn.project_kv(&h)?;
            // Concatenation keeps the cache differentiable for training.
            let (k, v) = match state.self_kv[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            xs = (xs + layer.self_attn.attend(&h, &k, &v, mask.as_ref(), path)?)?;
            state.self_kv[i] = Some((k, v));
            let h = layer.encoder_attn_layer_norm.forward(&xs, path)?;
            xs = (xs + layer.encoder_attn.attend_over(&h, &state.cross_kv[i], path)?)?;
            let h = layer.final_layer_norm.forward(&xs, path)?;
            xs = (&xs + layer.mlp.forward(&h)?)?;
        }
        state.position += seq;
        let xs = self.layer_norm.forward(&xs, path)?;
        Ok(self.proj_out.forward(&xs)?)
    }

    /// Greedy transcription without timestamps for one encoder output (batch 1).
    /// Returns the text token ids (prompt and end-of-text excluded).
    ///
    /// The encoder runs on the clip's real length, but Whisper's decoder was
    /// trained to attend over 30 s and, given less, loops ("10 of clubs 10 of
    /// clubs …"). So the clip's encoding is extended with the stored encoding
    /// of silence at the remaining positions: the decoder sees a 30 s context
    /// for the price of encoding the clip alone.
    pub fn transcribe(&self, encoder_out: &Tensor, special: &WhisperSpecialTokens) -> Result<Vec<u32>> {
        self.transcribe_after(encoder_out, special, &[])
    }

    /// Like [`AsrDecoder::transcribe`], conditioned on `previous` text tokens
    /// (a prompt: names, spelling, style), fed after `<|startofprev|>` as
    /// Whisper was trained; at most half the decoder's positions of it are kept.
    pub fn transcribe_after(
        &self,
        encoder_out: &Tensor,
        special: &WhisperSpecialTokens,
        previous: &[u32],
    ) -> Result<Vec<u32>> {
        // Encoder frames are 20 ms. Even fast speech stays under ~8 tokens/s, so
        // a budget of 10/s plus slack only ever stops a decoder stuck in a loop.
        let seconds = encoder_out.dim(1)? as f64 * 0.02;
        let budget = 16 + (10.0 * seconds) as usize;
        let mut state = self.start_padded(encoder_out, &self.silence_kv()?)?;
        let device = encoder_out.device();
        let mut prompt = Vec::new();
        if !previous.is_empty() {
            let Some(start_of_prev) = special.start_of_prev else {
                bail!("this Whisper tokenizer has no <|startofprev|> token, so it cannot take a prompt")
            };
            let keep = self.config.max_target_positions / 2 - 1;
            prompt.push(start_of_prev);
            prompt.extend_from_slice(&previous[previous.len().saturating_sub(keep)..]);
        }
        let start_of_transcript = prompt.len();
        prompt.extend(special.prompt());
        let suppress = self.suppress_mask(special, false)?.to_device(device)?;
        let suppress_first = self.suppress_mask(special, true)?.to_device(device)?;
        let mut input = Tensor::new(prompt.as_slice(), device)?.unsqueeze(0)?;
        let mut text = Vec::new();
        let mut no_speech_prob = 0.0;
        while state.position < self.config.max_target_positions && text.len() < budget {
            let logits = self.forward(&input, &mut state, Path::Fast)?.squeeze(0)?.to_dtype(candle_core::DType::F32)?;
            if text.is_empty() {
                if let Some(id) = special.no_speech {
                    // Whisper's silence detector: the no-speech probability right after <|startoftranscript|>.
                    no_speech_prob = candle_nn::ops::softmax_last_dim(&logits.get(start_of_transcript)?)?
                        .get(id as usize)?
                        .to_scalar::<f32>()?;
                }
            }
            let mask = if text.is_empty() { &suppress_first } else { &suppress };
            let last = (logits.get(input.dim(1)? - 1)? + mask)?;
            let next = last.argmax(D::Minus1)?.to_scalar::<u32>()?;
            if next == special.end_of_text {
                break;
            }
            text.push(next);
            input = Tensor::new(&[next], device)?.unsqueeze(0)?;
        }
        // OpenAI's transcribe() keeps a window that is probably silent when it
        // decoded confidently, which is how silence becomes "you". An assistant
        // must not answer silence, so the no-speech probability alone decides.
        // Measured: silence 0.91, brown noise 0.87, speech clips 0.10-0.46.
        if no_speech_prob > NO_SPEECH_THRESHOLD {
            text.clear();
        }
        Ok(text)
    }

    /// Cross-attention keys/values of the silence context, projected once;
    /// afresh while a per-call adapter on this decoder may change them.
    fn silence_kv(&self) -> Result<Vec<KvSegment>> {
        if adapter_scope::active_touches("asr_decoder.") {
            return self.project_silence();
        }
        if let Some(kv) = self.silence_kv.get() {
            return Ok(kv.clone());
        }
        let mut stored = self.stored_silence_kv.lock().unwrap_or_else(PoisonError::into_inner);
        let kv = match stored.take() {
            Some(stored) => self.read_stored_silence(stored).context("the stored silence keys and values")?,
            None => self.project_silence()?,
        };
        Ok(self.silence_kv.get_or_init(|| kv).clone())
    }

    /// The stored silence keys and values ([`SILENCE_KV`]) per layer, checked against the
    /// config; on the CPU, f16 ones are read in place from the mapped file.
    fn read_stored_silence(&self, stored: ClaimedLater) -> Result<Vec<KvSegment>> {
        match stored.into_mapped(DType::F16) {
            Ok(mapped) => {
                let pairs = self.silence_pairs(mapped, |m| m.shape().dims().to_vec())?;
                Ok(pairs.into_iter().map(|(k, v)| KvSegment::Mapped { k, v, from: 0 }).collect())
            }
            Err(stored) => {
                let pairs = self.silence_pairs(stored.into_f32()?, |t| t.dims().to_vec())?;
                Ok(pairs.into_iter().map(|(k, v)| KvSegment::Tensors(k, v)).collect())
            }
        }
    }

    /// Each layer's `{i}.key` and `{i}.value` from `named`, in the shape the decoder needs.
    fn silence_pairs<T>(&self, named: Vec<(String, T)>, dims: impl Fn(&T) -> Vec<usize>) -> Result<Vec<(T, T)>> {
        let mut tensors: std::collections::HashMap<String, T> = named.into_iter().collect();
        let heads = self.config.decoder_heads;
        let shape = [1, heads, self.config.max_source_positions, self.config.d_model / heads];
        let mut take = |name: String| -> Result<T> {
            let t = tensors.remove(&name).with_context(|| format!("`{SILENCE_KV}.{name}` is missing"))?;
            if dims(&t) != shape {
                bail!("`{SILENCE_KV}.{name}` has shape {:?}, the decoder needs {shape:?}", dims(&t));
            }
            Ok(t)
        };
        let kv = (0..self.layers.len())
            .map(|i| Ok((take(format!("{i}.key"))?, take(format!("{i}.value"))?)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(extra) = tensors.keys().next() {
            bail!("`{SILENCE_KV}.{extra}` is not a layer's key or value");
        }
        Ok(kv)
    }

    /// The silence keys and values as `kioku pack` stores them ([`SILENCE_KV`]), by name.
    pub fn silence_kv_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut named = Vec::new();
        for (i, (k, v)) in self.project_silence_tensors()?.into_iter().enumerate() {
            named.push((format!("{SILENCE_KV}.{i}.key"), k.contiguous()?));
            named.push((format!("{SILENCE_KV}.{i}.value"), v.contiguous()?));
        }
        Ok(named)
    }

    /// Projects the silence context ahead of the first transcription.
    pub fn warm_up(&self) -> Result<()> {
        self.silence_kv().map(|_| ())
    }

    /// Additive logit mask: -inf on suppressed tokens and on every control or
    /// timestamp token except end-of-text, which no-timestamp decoding never emits.
    fn suppress_mask(&self, special: &WhisperSpecialTokens, first: bool) -> Result<Tensor> {
        let mut mask = vec![0f32; self.config.vocab_size];
        let controls = (special.end_of_text + 1) as usize..self.config.vocab_size;
        let listed =
            self.config.suppress_tokens.iter().chain(if first { &self.config.begin_suppress_tokens[..] } else { &[] });
        for id in controls.chain(listed.map(|&id| id as usize)) {
            if let Some(m) = mask.get_mut(id) {
                *m = f32::NEG_INFINITY;
            }
        }
        Ok(Tensor::from_vec(mask, self.config.vocab_size, &candle_core::Device::Cpu)?)
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::components::ASR_DECODER;
    use crate::model::file::MappedModel;
    use candle_core::{DType, Device};

    /// Stored in f16 by `kioku pack` from f32 weights, read back as f32: they differ from a
    /// projection at load (f16 weights and context, f32 arithmetic) by rounding only: measured
    /// at most 7e-4 of the largest magnitude, on every layer.
    #[test]
    fn the_stored_silence_keys_and_values_match_their_projection() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kioku-tiny-en.safetensors");
        let mapped = MappedModel::open(&path).expect("the default model (`make model`)");
        let weights = mapped.weights(&Device::Cpu, DType::F32).unwrap();
        let decoder = AsrDecoder::load(&weights.pp(ASR_DECODER), &mapped.header.whisper).unwrap();
        let stored = decoder.stored_silence_kv.lock().unwrap().take().expect("the default model stores them");
        let stored = decoder.read_stored_silence(stored).unwrap();
        assert!(stored.iter().all(|s| matches!(s, KvSegment::Mapped { .. })), "read in place from the file");
        let projected = decoder.project_silence_tensors().unwrap();
        assert_eq!(stored.len(), decoder.layers.len());
        let stored = stored.iter().map(|s| s.to_tensors(&Device::Cpu, DType::F32).unwrap());
        for (layer, ((sk, sv), (pk, pv))) in stored.zip(&projected).enumerate() {
            for (which, s, p) in [("key", &sk, pk), ("value", &sv, pv)] {
                let diff = (s - p).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let scale = p.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                eprintln!("layer {layer} {which}: max |stored - projected| {diff} of max |projected| {scale}");
                assert!(diff <= 2e-3 * scale, "layer {layer} {which}: {diff} against {scale}");
            }
        }
    }
}
