//! Our Whisper and Llama modules against candle-transformers' implementations
//! on the same real weights: small logit differences, identical greedy tokens.

mod common;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as ref_llama;
use common::*;
use kioku::model::llama::Llama;
use kioku::model::ops::Path;
use kioku::model::weights::Weights;
use kioku::model::whisper::{AsrDecoder, WhisperEncoder, WhisperSpecialTokens};
use std::collections::{BTreeMap, HashMap};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn renamed(tensors: &BTreeMap<String, Tensor>, from: &str, to: &str) -> HashMap<String, Tensor> {
    tensors.iter().filter_map(|(k, v)| k.strip_prefix(from).map(|rest| (format!("{to}{rest}"), v.clone()))).collect()
}

fn ours(tensors: &BTreeMap<String, Tensor>) -> Weights {
    Weights::new(tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), DType::F32, &Device::Cpu)
}

#[test]
fn whisper_matches_candle_transformers() {
    let imported = kioku::import::import_whisper(&whisper_source()).unwrap();
    let cfg = &imported.config;
    let w = ours(&imported.tensors);
    let encoder = WhisperEncoder::load(&w.pp("encoder"), cfg).unwrap();
    let decoder = AsrDecoder::load(&w.pp("asr_decoder"), cfg).unwrap();

    let mut reference = reference_whisper(&imported);

    let samples = kioku::assistant::load_audio_16k(&example_wav()).unwrap();
    let mel = kioku::audio::MelExtractor::new(cfg.n_mels).compute(&samples).to_tensor(&Device::Cpu).unwrap();
    let enc = encoder.forward(&mel, Path::Fast).unwrap();
    let enc_ref = reference.encoder.forward(&mel, true).unwrap();
    // candle-transformers uses the tanh approximation of GELU; Whisper (and
    // kioku) use the exact erf form, so the encoders differ slightly.
    let enc_diff = max_abs_diff(&enc, &enc_ref);
    let enc_mean = (&enc - &enc_ref).unwrap().abs().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    eprintln!("encoder max |diff| = {enc_diff:e}, mean |diff| = {enc_mean:e}");
    assert!(enc_diff < 0.2 && enc_mean < 5e-3, "encoder differs by {enc_diff} (mean {enc_mean})");

    let tokenizer = kioku::model::bpe::tokenizer_from_json(&imported.tokenizer).unwrap();
    let special = WhisperSpecialTokens::from_tokenizer(&tokenizer, cfg).unwrap();
    let text = decoder.transcribe(&enc, &special).unwrap();
    assert!(tokenizer.decode(&text, true).unwrap().to_lowercase().contains("capital of france"));

    // Teacher-forced over prompt + our transcript, both decoders attending to
    // the same encoder output: same logits, same argmax everywhere.
    let tokens: Vec<u32> = special.prompt().into_iter().chain(text.iter().copied()).collect();
    let input = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut state = decoder.start(&enc_ref).unwrap();
    let logits = decoder.forward(&input, &mut state, Path::Fast).unwrap();
    let hidden_ref = reference.decoder.forward(&input, &enc_ref, true).unwrap();
    let logits_ref = reference.decoder.final_linear(&hidden_ref).unwrap();
    let dec_diff = max_abs_diff(&logits, &logits_ref);
    eprintln!("decoder max |logit diff| = {dec_diff:e}");
    // Again only the GELU form differs (the decoder MLPs use it too); logits are O(10).
    assert!(dec_diff < 0.2, "decoder logits differ by {dec_diff}");
    assert_eq!(
        logits.argmax(D::Minus1).unwrap().to_vec2::<u32>().unwrap(),
        logits_ref.argmax(D::Minus1).unwrap().to_vec2::<u32>().unwrap()
    );

    // The training path computes the same function.
    let enc_slow = encoder.forward(&mel, Path::Trainable).unwrap();
    assert!(max_abs_diff(&enc, &enc_slow) < 1e-3);
    let mut state = decoder.start(&enc_ref).unwrap();
    let logits_slow = decoder.forward(&input, &mut state, Path::Trainable).unwrap();
    assert!(max_abs_diff(&logits, &logits_slow) < 1e-2);
}

/// Greedy continuation with our Llama and its KV cache.
fn greedy_ours(llm: &Llama, prompt: &[u32], n: usize) -> (Tensor, Vec<u32>) {
    let mut cache = llm.new_cache();
    let mut input = Tensor::new(prompt, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut out = Vec::new();
    let mut first = None;
    for _ in 0..n {
        let logits = llm.next_token_logits(&llm.embed(&input).unwrap(), &mut cache).unwrap();
        first.get_or_insert_with(|| logits.clone());
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        out.push(next);
        input = Tensor::new(&[[next]], &Device::Cpu).unwrap();
    }
    (first.unwrap(), out)
}

const GREEDY_TOKENS: usize = 24;

fn prompt_tokens(imported: &kioku::import::ImportedLlm) -> Vec<u32> {
    let tokenizer = kioku::model::bpe::tokenizer_from_json(&imported.tokenizer).unwrap();
    let chat = kioku::generation::ChatTemplate::new(&imported.chat_template).unwrap();
    let prompt = chat.render(None, "What is the capital of France?").unwrap();
    tokenizer.encode(prompt, false).unwrap().get_ids().to_vec()
}

#[test]
fn llama_matches_candle_transformers_on_dequantized_weights() {
    let imported = kioku::import::import_llm(&gguf_source()).unwrap();
    let cfg = &imported.config;
    let llm = Llama::load(&ours(&imported.tensors).pp("llm"), cfg).unwrap();
    let prompt = prompt_tokens(&imported);
    let (logits, greedy) = greedy_ours(&llm, &prompt, GREEDY_TOKENS);

    let vb = VarBuilder::from_tensors(renamed(&imported.tensors, "llm.", "model."), DType::F32, &Device::Cpu);
    let ref_cfg = ref_llama::Config {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        vocab_size: cfg.vocab_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads,
        use_flash_attn: false,
        rms_norm_eps: cfg.rms_norm_eps,
        rope_theta: cfg.rope_theta as f32,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: cfg.max_position_embeddings,
        tie_word_embeddings: cfg.tie_word_embeddings,
    };
    let reference = ref_llama::Llama::load(vb, &ref_cfg).unwrap();
    let mut cache = ref_llama::Cache::new(true, DType::F32, &ref_cfg, &Device::Cpu).unwrap();
    let mut input = Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut pos = 0;
    let mut greedy_ref = Vec::new();
    for step in 0..GREEDY_TOKENS {
        let l = reference.forward(&input, pos, &mut cache).unwrap().squeeze(0).unwrap();
        if step == 0 {
            let diff = max_abs_diff(&logits, &l);
            eprintln!("llama max |logit diff| vs candle-transformers llama = {diff:e}");
            assert!(diff < 1e-2, "logits differ by {diff}");
        }
        pos += input.dim(1).unwrap();
        let next = l.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        greedy_ref.push(next);
        input = Tensor::new(&[[next]], &Device::Cpu).unwrap();
    }
    assert_eq!(greedy, greedy_ref);
}
