//! Fast path against dense reference on one model file: the check that a
//! device's kernels (packed q8 matmuls on the CPU, f16 on a GPU, fused norms,
//! attention and LoRA terms, the speech-adapter gate) compute what the plain
//! f32 tensor ops compute. The reference always runs on the CPU with every
//! weight dense and `Path::Trainable`; the candidate runs on `device` as
//! kioku serves (its default dtype, `Path::Fast`, stored blocks). Both read
//! the same stored values (the reference dequantizes the q8 blocks), so what
//! differs is the arithmetic alone.

use crate::audio::MelExtractor;
use crate::device::default_dtype;
use crate::model::adapter_scope::{ActiveAdapter, AdapterScope, ScopedAdapter};
use crate::model::components::{ASR_DECODER, ENCODER, LLM, PROJECTOR};
use crate::model::file::{take_speech_adapter, MappedModel};
use crate::model::llama::Llama;
use crate::model::lora::{Adapter, LoraConfig, LoraPair, LoraSet};
use crate::model::ops::Path as OpsPath;
use crate::model::projector::Projector;
use crate::model::whisper::{AsrDecoder, WhisperEncoder, WhisperSpecialTokens};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;

/// Scale the random adapter is applied at: below 1, so that the scale itself
/// is exercised, not just the factors.
pub const ADAPTER_SCALE: f64 = 0.5;
/// Largest logit difference allowed, as a fraction of the reference logits'
/// standard deviation.
pub const DEFAULT_TOLERANCE: f32 = 0.05;

/// One compared decode: greedy tokens of both sides and how far their logits
/// were apart while the tokens agreed.
#[derive(Debug, Clone)]
pub struct ParityCase {
    pub name: String,
    pub reference_tokens: Vec<u32>,
    pub candidate_tokens: Vec<u32>,
    /// Largest |reference - candidate| over every compared logit.
    pub max_abs_diff: f32,
    /// Standard deviation of the reference logits: what the difference is measured against.
    pub logit_std: f32,
    /// With the random adapter: how far it moved the reference's first logits
    /// (largest change), which shows the adapter terms were exercised.
    pub adapter_effect: Option<f32>,
}

impl ParityCase {
    /// The difference as a fraction of the spread of the logits.
    pub fn relative_diff(&self) -> f32 {
        self.max_abs_diff / self.logit_std.max(f32::MIN_POSITIVE)
    }

    pub fn passes(&self, tolerance: f32) -> bool {
        self.reference_tokens == self.candidate_tokens && self.relative_diff() <= tolerance
    }
}

/// One side of the comparison: every component of the model, loaded one way.
struct Side {
    encoder: WhisperEncoder,
    decoder: AsrDecoder,
    projector: Projector,
    llm: Llama,
    speech: Vec<ActiveAdapter>,
    whisper_prompt: Vec<u32>,
    device: Device,
    path: OpsPath,
}

impl Side {
    fn load(model: &MappedModel, device: &Device, reference: bool, adapter: Option<&Adapter>) -> Result<Self> {
        let header = &model.header;
        let dtype = if reference { DType::F32 } else { default_dtype(device) };
        let weights = model.weights(device, dtype)?.with_dense_only(reference);
        let speech = take_speech_adapter(&weights, header)?;
        let lora = Arc::new(match adapter {
            Some(adapter) => LoraSet::default().apply(adapter.clone(), ADAPTER_SCALE, "random parity adapter"),
            None => LoraSet::default(),
        });
        let weights = weights.with_lora(lora.clone());
        let projector_config = header.projector.as_ref().context("parity needs a model with a projector")?;
        let encoder = WhisperEncoder::load(&weights.pp(ENCODER), &header.whisper)?;
        let decoder = AsrDecoder::load(&weights.pp(ASR_DECODER), &header.whisper)?;
        let projector = Projector::load(&weights.pp(PROJECTOR), projector_config)?;
        let llm = Llama::load(&weights.pp(LLM), &header.llm)?;
        lora.ensure_all_attached()?;
        let speech = match speech {
            Some(s) => vec![(
                Arc::new(ScopedAdapter::prepare(&s, "speech adapter", &lora.linear_shapes(), device, dtype)?),
                1.0,
            )],
            None => Vec::new(),
        };
        let whisper_tokenizer = crate::assembly::tokenizer_from_json(&header.whisper_tokenizer, "Whisper")?;
        Ok(Self {
            encoder,
            decoder,
            projector,
            llm,
            speech,
            whisper_prompt: WhisperSpecialTokens::from_tokenizer(&whisper_tokenizer, &header.whisper)?.prompt(),
            device: device.clone(),
            path: if reference { OpsPath::Trainable } else { OpsPath::Fast },
        })
    }

    fn encode(&self, samples: &[f32]) -> Result<Tensor> {
        let mel = MelExtractor::new(self.encoder.config().n_mels).compute(samples).to_tensor(&self.device)?;
        self.encoder.forward(&mel, self.path)
    }

    /// Greedy Whisper decoding of `steps` tokens; the logits of each step on the CPU.
    fn transcribe(&self, encoded: &Tensor, steps: usize) -> Result<Greedy> {
        let mut state = self.decoder.start(encoded)?;
        greedy(steps, &self.whisper_prompt, |ids| {
            let logits = self.decoder.forward(&self.ids(ids)?, &mut state, self.path)?;
            Ok(logits.narrow(1, logits.dim(1)? - 1, 1)?)
        })
    }

    /// Greedy LLM decoding after `prefix` embeddings, with the speech adapter on when `speech`.
    fn answer(&self, prefix: &Tensor, steps: usize, speech: bool) -> Result<Greedy> {
        let _scope = AdapterScope::enter(if speech { &self.speech } else { &[] });
        let mut cache = self.llm.new_cache();
        let mut pending = Some(prefix.clone());
        greedy(steps, &[], |ids| {
            let embeds = match pending.take() {
                Some(prefix) => prefix,
                None => self.llm.embed(&self.ids(ids)?)?,
            };
            let hidden = self.llm.forward_embeds(&embeds, Some(&mut cache), self.path)?;
            self.llm.logits(&hidden.narrow(1, hidden.dim(1)? - 1, 1)?)
        })
    }

    fn ids(&self, ids: &[u32]) -> Result<Tensor> {
        Ok(Tensor::new(ids, &self.device)?.unsqueeze(0)?)
    }

    fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.llm.embed(&self.ids(ids)?)
    }
}

struct Greedy {
    tokens: Vec<u32>,
    /// Per step, on the CPU in f32.
    logits: Vec<Vec<f32>>,
}

/// Feeds `prompt`, then each argmax token, `steps` times; `step` gets the ids
/// to feed and returns the logits of the last position (1, 1, vocab).
fn greedy(steps: usize, prompt: &[u32], mut step: impl FnMut(&[u32]) -> Result<Tensor>) -> Result<Greedy> {
    let mut out = Greedy { tokens: Vec::new(), logits: Vec::new() };
    let mut feed = prompt.to_vec();
    for _ in 0..steps {
        let logits: Vec<f32> = step(&feed)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        if logits.iter().any(|l| !l.is_finite()) {
            bail!("non-finite logits");
        }
        let token = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap_or(0);
        out.tokens.push(token);
        out.logits.push(logits);
        feed = vec![token];
    }
    Ok(out)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn compare(name: impl Into<String>, reference: &Greedy, candidate: &Greedy) -> ParityCase {
    let agreeing = reference.tokens.iter().zip(&candidate.tokens).take_while(|(a, b)| a == b).count();
    // Logits are compared up to the first step after which the inputs differ.
    let compared = (agreeing + 1).min(reference.logits.len());
    let pairs = reference.logits[..compared].iter().zip(&candidate.logits[..compared]);
    let max_abs_diff = pairs.map(|(r, c)| max_abs_diff(r, c)).fold(0f32, f32::max);
    let all: Vec<f32> = reference.logits.iter().flatten().copied().collect();
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    let logit_std = (all.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / all.len() as f32).sqrt();
    ParityCase {
        name: name.into(),
        reference_tokens: reference.tokens.clone(),
        candidate_tokens: candidate.tokens.clone(),
        max_abs_diff,
        logit_std,
        adapter_effect: None,
    }
}

/// A random adapter on every LLM projection and the ASR decoder's attention,
/// so the fused LoRA terms of both models are compared.
pub fn random_adapter(model: &MappedModel, seed: u64) -> Result<Adapter> {
    let config = LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0 };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut random = |rows: usize, cols: usize| -> Result<Tensor> {
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-0.2f32..0.2)).collect();
        Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?)
    };
    let adapted = |name: &str| {
        let llm = name.starts_with(&format!("{LLM}.layers.")) && name.ends_with("_proj.weight");
        let decoder = name.starts_with(&format!("{ASR_DECODER}.layers."))
            && (name.ends_with("self_attn.q_proj.weight") || name.ends_with("fc1.weight"));
        llm || decoder
    };
    let mut modules = std::collections::BTreeMap::new();
    for name in model.names().into_iter().filter(|n| adapted(n)) {
        let shape = model.dense_shape(&name)?;
        let pair = LoraPair { a: random(config.rank, shape[1])?, b: random(shape[0], config.rank)? };
        modules.insert(name.trim_end_matches(".weight").to_string(), pair);
    }
    Ok(Adapter { config, modules, audio_turns_only: false })
}

/// Seeded audio-like input: a chirp with noise, `seconds` long at 16 kHz.
pub fn test_audio(seconds: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..(seconds * 16_000.0) as usize)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t) * t).sin() + rng.random_range(-0.05f32..0.05)
        })
        .collect()
}

/// Compares the dense CPU reference with the fast path on `device` for the
/// model at `path`: Whisper decoding, an audio turn through the projector
/// (with the speech adapter) into the LLM, and a text turn, each without and
/// with a random LoRA adapter at [`ADAPTER_SCALE`]; `steps` greedy tokens each.
pub fn check(path: &Path, device: &Device, steps: usize) -> Result<Vec<ParityCase>> {
    let model = MappedModel::open(path)?;
    let adapter = random_adapter(&model, 7)?;
    let audio = test_audio(3.0, 11);
    let text_prompt: Vec<u32> = (10..26).collect();
    let run = |side: &Side| -> Result<[Greedy; 3]> {
        let encoded = side.encode(&audio)?;
        let projected = side.projector.forward(&encoded, side.path)?;
        let audio_turn =
            Tensor::cat(&[&side.embed(&text_prompt[..4])?, &projected, &side.embed(&text_prompt[4..8])?], 1)?;
        Ok([
            side.transcribe(&encoded, steps)?,
            side.answer(&audio_turn, steps, true)?,
            side.answer(&side.embed(&text_prompt)?, steps, false)?,
        ])
    };
    let names = ["whisper decoder", "projector -> LLM", "LLM"];
    let mut cases = Vec::new();
    let mut without_adapter: Option<[Greedy; 3]> = None;
    for adapter in [None, Some(&adapter)] {
        let reference = run(&Side::load(&model, &Device::Cpu, true, adapter)?)?;
        let candidate = run(&Side::load(&model, device, false, adapter)?)?;
        for (i, name) in names.iter().enumerate() {
            let mut case = compare(*name, &reference[i], &candidate[i]);
            if let Some(base) = &without_adapter {
                case.name = format!("{name} + LoRA {ADAPTER_SCALE}");
                case.adapter_effect = Some(max_abs_diff(&reference[i].logits[0], &base[i].logits[0]));
            }
            cases.push(case);
        }
        without_adapter = Some(reference);
    }
    Ok(cases)
}
