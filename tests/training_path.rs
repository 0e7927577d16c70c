//! The training-safe path (`Path::Trainable`) reaches every weight: with the
//! fused kernels some ops silently return no gradient (docs/DESIGN.md,
//! "Training through candle"), so each module is checked tensor by tensor on
//! the real weights.

mod common;

use candle_core::{DType, Device, Tensor, Var, D};
use common::*;
use kioku::model::llama::Llama;
use kioku::model::ops::Path;
use kioku::model::projector::{Projector, ProjectorConfig};
use kioku::model::weights::Weights;
use kioku::model::whisper::{AsrDecoder, WhisperEncoder};
use std::collections::{BTreeMap, HashMap};

/// Every tensor as a trainable variable, and a `Weights` view over them.
fn variables(tensors: &BTreeMap<String, Tensor>) -> (HashMap<String, Var>, Weights) {
    let vars: HashMap<String, Var> = tensors.iter().map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap())).collect();
    let weights =
        Weights::new(vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect(), DType::F32, &Device::Cpu)
            .with_dense_only(true);
    (vars, weights)
}

/// Names of the variables whose gradient is missing or all zero.
fn without_gradient(vars: &HashMap<String, Var>, loss: &Tensor, skip: &[&str]) -> Vec<String> {
    let grads = loss.backward().unwrap();
    let mut missing: Vec<String> = vars
        .iter()
        .filter(|(name, _)| !skip.iter().any(|s| name.ends_with(s)))
        .filter(|(_, var)| {
            grads
                .get(var.as_tensor())
                .is_none_or(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0)
        })
        .map(|(name, _)| name.clone())
        .collect();
    missing.sort();
    missing
}

fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Tensor {
    let logits = logits.squeeze(0).unwrap();
    let targets = Tensor::new(targets, logits.device()).unwrap();
    candle_nn::loss::cross_entropy(&logits, &targets).unwrap()
}

#[test]
fn whisper_trainable_path_reaches_every_weight() {
    let imported = kioku::import::import_whisper(&whisper_source()).unwrap();
    let (vars, w) = variables(&imported.tensors);
    let encoder = WhisperEncoder::load(&w.pp("encoder"), &imported.config).unwrap();
    let decoder = AsrDecoder::load(&w.pp("asr_decoder"), &imported.config).unwrap();
    let samples = kioku::assistant::load_audio_16k(&example_wav()).unwrap();
    let mel =
        kioku::audio::MelExtractor::new(imported.config.n_mels).compute(&samples).to_tensor(&Device::Cpu).unwrap();
    let encoded = encoder.forward(&mel, Path::Trainable).unwrap();
    let tokens = [50257u32, 50362, 1867, 318, 262, 3139, 286, 4881, 30];
    let input = Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut state = decoder.start(&encoded).unwrap();
    let logits = decoder.forward(&input, &mut state, Path::Trainable).unwrap();
    let loss = cross_entropy(&logits, &tokens[1..]);
    // The silence context and its stored keys and values only extend short clips at inference.
    let missing = without_gradient(&vars, &loss, &["silence_context", ".key", ".value"]);
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

#[test]
fn llama_trainable_path_reaches_every_weight() {
    let imported = kioku::import::import_llm(&gguf_source()).unwrap();
    let (vars, w) = variables(&imported.tensors);
    let llm = Llama::load(&w.pp("llm"), &imported.config).unwrap();
    let tokens = [1u32, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47];
    let input = Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let hidden = llm.forward_embeds(&llm.embed(&input).unwrap(), None, Path::Trainable).unwrap();
    let loss = cross_entropy(&llm.logits(&hidden).unwrap(), &tokens[1..]);
    let missing = without_gradient(&vars, &loss, &[]);
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

#[test]
fn projector_trainable_path_reaches_every_weight() {
    let cfg = ProjectorConfig { stack_factor: 8, input_dim: 16, hidden_dim: 32, output_dim: 12 };
    let dev = Device::Cpu;
    let tensors: BTreeMap<String, Tensor> = [
        ("projector.ln_pre.weight", Tensor::ones(128, DType::F32, &dev).unwrap()),
        ("projector.linear_1.weight", Tensor::randn(0f32, 0.1, (32, 128), &dev).unwrap()),
        ("projector.ln_mid.weight", Tensor::ones(16, DType::F32, &dev).unwrap()),
        ("projector.linear_2.weight", Tensor::randn(0f32, 0.1, (12, 16), &dev).unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (vars, w) = variables(&tensors);
    let projector = Projector::load(&w.pp("projector"), &cfg).unwrap();
    // 21 frames: the last, partial stack of 8 is zero-padded.
    let frames = Tensor::randn(0f32, 1.0, (1, 21, 16), &dev).unwrap();
    let out = projector.forward(&frames, Path::Trainable).unwrap();
    assert_eq!(out.dims(), &[1, 3, 12]);
    let missing = without_gradient(&vars, &out.sqr().unwrap().sum(D::Minus1).unwrap().mean_all().unwrap(), &[]);
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

/// The fast path really is gradient-free for some weights: the check above can fail.
#[test]
fn fast_path_misses_gradients() {
    let imported = kioku::import::import_llm(&gguf_source()).unwrap();
    let (vars, w) = variables(&imported.tensors);
    let llm = Llama::load(&w.pp("llm"), &imported.config).unwrap();
    let input = Tensor::new(&[[1u32, 4093, 198]], &Device::Cpu).unwrap();
    let hidden = llm.forward_embeds(&llm.embed(&input).unwrap(), None, Path::Fast).unwrap();
    let loss = llm.logits(&hidden).unwrap().sqr().unwrap().mean_all().unwrap();
    assert!(!without_gradient(&vars, &loss, &[]).is_empty());
}
