//! The Hugging Face checkpoint importers, tested without a download: the real
//! pinned checkpoints (CTranslate2 Whisper, GGUF Llama) are imported, written
//! back out as Hugging Face checkpoint directories laid out the way
//! transformers' `save_pretrained` lays them out, and imported again. The
//! second import must agree with the first bit for bit, and a model packed
//! from the Hugging Face directories must still transcribe and answer.

mod common;

use candle_core::Tensor;
use common::*;
use kioku::import::{ImportedLlm, ImportedWhisper};
use kioku::model::file::MappedModel;
use kioku::model::llama::LlamaConfig;
use kioku::model::whisper::WhisperConfig;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The tensor kioku derives at import (the encoder's output for 30 s of
/// silence); Hugging Face checkpoints don't have it.
const SILENCE_CONTEXT: &str = "asr_decoder.silence_context";

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// One safetensors file as transformers writes it (`{"format": "pt"}` metadata).
fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata), path).unwrap();
}

// ---------------------------------------------------------------- Whisper

/// Where the decoder's suppression lists go: `config.json` (older exports,
/// such as openai/whisper-tiny.en) or `generation_config.json` (newer ones,
/// whose config.json no longer carries generation parameters).
#[derive(Clone, Copy, PartialEq)]
enum SuppressLists {
    InConfig,
    InGenerationConfig,
}

fn whisper_config_json(c: &WhisperConfig, lists: SuppressLists) -> Value {
    let mut v = json!({
        "_name_or_path": "openai/whisper-tiny.en",
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "num_mel_bins": c.n_mels,
        "d_model": c.d_model,
        "encoder_layers": c.encoder_layers,
        "encoder_attention_heads": c.encoder_heads,
        "encoder_ffn_dim": c.ffn_dim(),
        "decoder_layers": c.decoder_layers,
        "decoder_attention_heads": c.decoder_heads,
        "decoder_ffn_dim": c.ffn_dim(),
        "vocab_size": c.vocab_size,
        "max_source_positions": c.max_source_positions,
        "max_target_positions": c.max_target_positions,
        "scale_embedding": false,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "transformers_version": "4.46.0",
        "use_cache": true,
    });
    match lists {
        SuppressLists::InConfig => {
            v["suppress_tokens"] = json!(c.suppress_tokens);
            v["begin_suppress_tokens"] = json!(c.begin_suppress_tokens);
        }
        // `suppress_tokens` absent, `begin_suppress_tokens` null: neither may
        // shadow the lists in generation_config.json.
        SuppressLists::InGenerationConfig => v["begin_suppress_tokens"] = Value::Null,
    }
    v
}

/// Writes `whisper` as a Hugging Face Whisper checkpoint directory.
fn write_hf_whisper(dir: &Path, whisper: &ImportedWhisper, lists: SuppressLists) {
    std::fs::create_dir_all(dir).unwrap();
    let c = &whisper.config;
    write_json(&dir.join("config.json"), &whisper_config_json(c, lists));
    if lists == SuppressLists::InGenerationConfig {
        write_json(
            &dir.join("generation_config.json"),
            &json!({
                "max_length": c.max_target_positions,
                "no_timestamps_token_id": 50362,
                "suppress_tokens": c.suppress_tokens,
                "begin_suppress_tokens": c.begin_suppress_tokens,
                "transformers_version": "4.46.0",
            }),
        );
    }
    let mut hf = BTreeMap::new();
    for (name, t) in &whisper.tensors {
        if name == SILENCE_CONTEXT {
            continue; // derived by kioku's importer, not part of an HF checkpoint
        }
        let hf_name = if let Some(rest) = name.strip_prefix("encoder.") {
            format!("model.encoder.{rest}")
        } else if let Some(rest) = name.strip_prefix("asr_decoder.") {
            format!("model.decoder.{rest}")
        } else {
            panic!("unexpected Whisper tensor `{name}`")
        };
        hf.insert(hf_name, t.clone());
    }
    // WhisperForConditionalGeneration's output head, tied to the token embeddings.
    hf.insert("proj_out.weight".into(), whisper.tensors["asr_decoder.embed_tokens.weight"].clone());
    write_safetensors(&dir.join("model.safetensors"), &hf);
    std::fs::write(dir.join("tokenizer.json"), &whisper.tokenizer).unwrap();
}

// ---------------------------------------------------------------- Llama

fn llama_config_json(c: &LlamaConfig) -> Value {
    let rope_scaling = match &c.rope_scaling {
        None => Value::Null,
        Some(s) => {
            let mut v = serde_json::to_value(s).unwrap();
            v["rope_type"] = json!("llama3");
            v
        }
    };
    // HF accepts an integer or a list for `eos_token_id`; an integer when
    // there is one id (as in SmolLM2's own config.json), so both forms of the
    // field are what real checkpoints have, and every id survives the trip.
    let eos = match c.eos_token_ids.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": false,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": rope_scaling,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": eos,
        "pretraining_tp": 1,
        "torch_dtype": "float32",
        "transformers_version": "4.46.0",
        "use_cache": true,
    })
}

/// Writes `llm` as a Hugging Face Llama checkpoint directory, its weights
/// split in two shards with the `model.safetensors.index.json` beside them.
fn write_hf_llama(dir: &Path, llm: &ImportedLlm) {
    std::fs::create_dir_all(dir).unwrap();
    assert!(llm.config.tie_word_embeddings, "the pinned LLM ties its head (no lm_head.weight to write)");
    write_json(&dir.join("config.json"), &llama_config_json(&llm.config));
    let hf: Vec<(String, &Tensor)> = llm
        .tensors
        .iter()
        .map(|(name, t)| {
            let rest = name.strip_prefix("llm.").unwrap_or_else(|| panic!("unexpected LLM tensor `{name}`"));
            (if rest == "lm_head.weight" { rest.to_string() } else { format!("model.{rest}") }, t)
        })
        .collect();
    let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
    let total: usize = hf.iter().map(|(_, t)| bytes(t)).sum();
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut written = 0;
    for (name, t) in hf {
        shards[usize::from(written >= total / 2)].insert(name, t.clone());
        written += bytes(t);
    }
    assert!(shards.iter().all(|s| !s.is_empty()), "both shards hold tensors");
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        write_safetensors(&dir.join(&file), shard);
        for name in shard.keys() {
            weight_map.insert(name.clone(), json!(file));
        }
    }
    write_json(
        &dir.join("model.safetensors.index.json"),
        &json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
    );
    std::fs::write(dir.join("tokenizer.json"), &llm.tokenizer).unwrap();
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "add_prefix_space": false,
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "chat_template": llm.chat_template,
            "clean_up_tokenization_spaces": false,
            "model_max_length": llm.config.max_position_embeddings,
            "tokenizer_class": "GPT2Tokenizer",
        }),
    );
}

// ---------------------------------------------------------------- checks

/// Same names, dtypes, shapes, and bits (so -0.0 vs 0.0 or a NaN payload count).
fn assert_bit_identical(want: &BTreeMap<String, Tensor>, got: &BTreeMap<String, Tensor>) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "tensor names differ: missing {missing:?}, unexpected {extra:?}");
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
    };
    for (name, t) in want {
        let u = &got[name];
        assert_eq!((t.dtype(), t.dims()), (u.dtype(), u.dims()), "tensor {name}: dtype or shape changed");
        assert!(bits(t) == bits(u), "tensor {name} is not bit-identical after the Hugging Face round trip");
    }
}

#[test]
fn hf_whisper_checkpoint_imports_like_the_original() {
    let original = kioku::import::import_whisper(&whisper_source()).unwrap();
    assert!(original.tensors.contains_key(SILENCE_CONTEXT));
    assert!(!original.config.suppress_tokens.is_empty() && !original.config.begin_suppress_tokens.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    for lists in [SuppressLists::InConfig, SuppressLists::InGenerationConfig] {
        let dir = tmp.path().join(match lists {
            SuppressLists::InConfig => "whisper-config-lists",
            SuppressLists::InGenerationConfig => "whisper-generation-config-lists",
        });
        write_hf_whisper(&dir, &original, lists);
        let imported = kioku::import::import_whisper(&dir).unwrap();
        assert_eq!(imported.config, original.config);
        assert!(imported.tokenizer == original.tokenizer, "tokenizer.json changed");
        // Includes the silence context, recomputed from the same encoder weights.
        assert_bit_identical(&original.tensors, &imported.tensors);
    }
}

#[test]
fn hf_llama_checkpoint_imports_like_the_original_and_packs_into_a_working_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (whisper_dir, llm_dir) = (tmp.path().join("whisper-tiny.en"), tmp.path().join("SmolLM2-135M-Instruct"));
    let (whisper_config, llm_config, chat_template) = {
        let original = kioku::import::import_llm(&gguf_source()).unwrap();
        write_hf_llama(&llm_dir, &original);
        let imported = kioku::import::import_llm(&llm_dir).unwrap();
        assert_eq!(imported.config, original.config);
        assert!(imported.tokenizer == original.tokenizer, "tokenizer.json changed");
        assert_eq!(imported.chat_template, original.chat_template);
        assert_bit_identical(&original.tensors, &imported.tensors);

        let whisper = kioku::import::import_whisper(&whisper_source()).unwrap();
        write_hf_whisper(&whisper_dir, &whisper, SuppressLists::InConfig);
        (whisper.config, original.config, original.chat_template)
    }; // the imported tensors are dropped before the CLI runs

    let model = tmp.path().join("kioku-hf.safetensors");
    let model_arg = model.to_str().unwrap();
    let out = kioku(&[
        "pack",
        "--whisper",
        whisper_dir.to_str().unwrap(),
        "--llm",
        llm_dir.to_str().unwrap(),
        "-o",
        model_arg,
    ]);
    assert!(out.status.success(), "pack from Hugging Face directories failed: {}", stderr(&out));
    let header = MappedModel::open(&model).unwrap().header;
    assert_eq!(header.whisper, whisper_config);
    assert_eq!(header.llm, llm_config);
    assert_eq!(header.chat_template, chat_template);
    // No provenance.json beside a user's checkpoint: it is recorded by path.
    let sources: Vec<_> = header.provenance.iter().map(|p| (p.component.as_str(), PathBuf::from(&p.source))).collect();
    assert_eq!(sources, [("whisper", whisper_dir.clone()), ("llm", llm_dir.clone())]);

    let out = kioku(&["ask", "--model", model_arg, "--json", "--text", "What is the capital of France?"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let answer = v["answer"].as_str().unwrap();
    assert!(answer.contains("Paris"), "answer: {answer}");

    let out = kioku(&["transcribe", "--model", model_arg, example_wav().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let transcript = stdout(&out).to_lowercase();
    assert!(transcript.contains("capital of france"), "transcript: {transcript}");
}

/// A small but complete Whisper config, for checkpoints that fail later.
fn tiny_whisper_config() -> WhisperConfig {
    WhisperConfig {
        n_mels: 80,
        d_model: 8,
        encoder_layers: 1,
        encoder_heads: 2,
        decoder_layers: 1,
        decoder_heads: 2,
        vocab_size: 16,
        max_source_positions: 1500,
        max_target_positions: 4,
        suppress_tokens: vec![1],
        begin_suppress_tokens: vec![2],
    }
}

fn tiny_llama_config() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 4,
        vocab_size: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rope_freq_factors: None,
        max_position_embeddings: 32,
        tie_word_embeddings: true,
        qkv_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

#[test]
fn hf_import_reports_wrong_models_and_missing_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let message = |r: anyhow::Result<()>| format!("{:#}", r.expect_err("import must fail"));

    let bert = tmp.path().join("bert");
    std::fs::create_dir(&bert).unwrap();
    write_json(&bert.join("config.json"), &json!({"model_type": "bert", "hidden_size": 768}));
    for e in
        [message(kioku::import::import_whisper(&bert).map(drop)), message(kioku::import::import_llm(&bert).map(drop))]
    {
        assert!(e.contains("model_type") && e.contains("bert"), "{e}");
    }

    // Complete configs (and chat template), but the weights are a PyTorch pickle.
    let whisper = tmp.path().join("whisper-no-weights");
    std::fs::create_dir(&whisper).unwrap();
    write_json(&whisper.join("config.json"), &whisper_config_json(&tiny_whisper_config(), SuppressLists::InConfig));
    std::fs::write(whisper.join("pytorch_model.bin"), b"not safetensors").unwrap();
    let llama = tmp.path().join("llama-no-weights");
    std::fs::create_dir(&llama).unwrap();
    write_json(&llama.join("config.json"), &llama_config_json(&tiny_llama_config()));
    write_json(&llama.join("tokenizer_config.json"), &json!({"chat_template": "{{ messages }}"}));
    for e in [
        message(kioku::import::import_whisper(&whisper).map(drop)),
        message(kioku::import::import_llm(&llama).map(drop)),
    ] {
        assert!(e.contains(".safetensors"), "{e}");
    }

    // A tensor the Whisper importer has no name for is named in the error.
    let zeros = || Tensor::zeros(8, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let stray = BTreeMap::from([
        ("model.encoder.conv1.bias".to_string(), zeros()),
        ("model.extra.weight".to_string(), zeros()),
    ]);
    write_safetensors(&whisper.join("model.safetensors"), &stray);
    let e = message(kioku::import::import_whisper(&whisper).map(drop));
    assert!(e.contains("model.extra.weight"), "{e}");
}

/// Config forms the pinned SmolLM2 doesn't have but Llama 3.x checkpoints do:
/// an `eos_token_id` list, `rope_scaling` of type llama3, an untied head, a
/// chat template in `chat_template.jinja`; and fields left to their defaults.
#[test]
fn hf_llama_config_variants_import() {
    use kioku::model::llama::Llama3RopeScaling;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let zeros = |rows: usize, cols: usize| {
        Tensor::zeros((rows, cols), candle_core::DType::BF16, &candle_core::Device::Cpu).unwrap()
    };
    let mut config = tiny_llama_config();
    config.rope_scaling = Some(Llama3RopeScaling {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    });
    config.eos_token_ids = vec![128001, 128008, 128009];
    config.tie_word_embeddings = false;
    write_json(&dir.join("config.json"), &llama_config_json(&config));
    std::fs::write(dir.join("chat_template.jinja"), "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let weights = BTreeMap::from([
        ("model.embed_tokens.weight".to_string(), zeros(16, 8)),
        ("lm_head.weight".to_string(), zeros(16, 8)),
    ]);
    write_safetensors(&dir.join("model.safetensors"), &weights);
    let imported = kioku::import::import_llm(dir).unwrap();
    assert_eq!(imported.config, config);
    assert_eq!(imported.chat_template, "{% for m in messages %}{{ m.content }}{% endfor %}");
    assert_eq!(imported.tensors.keys().collect::<Vec<_>>(), ["llm.embed_tokens.weight", "llm.lm_head.weight"]);
    assert!(imported.tensors.values().all(|t| t.dtype() == candle_core::DType::F32), "bf16 weights are widened to f32");

    // A tied checkpoint that still stores its head: the copy is dropped.
    // `head_dim` and `num_key_value_heads` absent: hidden / heads and heads.
    let mut c = llama_config_json(&config);
    c["tie_word_embeddings"] = json!(true);
    c.as_object_mut().unwrap().remove("head_dim");
    c.as_object_mut().unwrap().remove("num_key_value_heads");
    write_json(&dir.join("config.json"), &c);
    let imported = kioku::import::import_llm(dir).unwrap();
    assert!(imported.config.tie_word_embeddings);
    let defaults = (config.hidden_size / config.num_attention_heads, config.num_attention_heads);
    assert_eq!((imported.config.head_dim, imported.config.num_key_value_heads), defaults);
    assert_eq!(imported.tensors.keys().collect::<Vec<_>>(), ["llm.embed_tokens.weight"]);
}

/// transformers 5 writes the rope settings as `rope_parameters`, theta
/// included; Qwen2 checkpoints (`model_type: qwen2`) have q/k/v biases
/// without an `attention_bias` key; a sliding window is refused.
#[test]
fn hf_rope_parameters_and_qwen2_configs_import() {
    use kioku::model::llama::Llama3RopeScaling;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("chat_template.jinja"), "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let zeros = Tensor::zeros((16, 8), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    write_safetensors(
        &dir.join("model.safetensors"),
        &BTreeMap::from([("model.embed_tokens.weight".to_string(), zeros)]),
    );
    let mut config = tiny_llama_config();
    let mut c = llama_config_json(&config);
    let object = c.as_object_mut().unwrap();
    object.remove("rope_theta");
    object.remove("rope_scaling");
    object.insert(
        "rope_parameters".into(),
        json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    );
    write_json(&dir.join("config.json"), &c);
    config.rope_theta = 500_000.0;
    config.rope_scaling = Some(Llama3RopeScaling {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    });
    assert_eq!(kioku::import::import_llm(dir).unwrap().config, config);

    c["model_type"] = json!("qwen2");
    c.as_object_mut().unwrap().remove("attention_bias");
    c["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1000000.0});
    c["use_sliding_window"] = json!(false);
    write_json(&dir.join("config.json"), &c);
    let imported = kioku::import::import_llm(dir).unwrap().config;
    assert!(imported.qkv_bias && imported.rope_scaling.is_none() && imported.rope_theta == 1_000_000.0, "{imported:?}");

    c["use_sliding_window"] = json!(true);
    write_json(&dir.join("config.json"), &c);
    let e = format!("{:#}", kioku::import::import_llm(dir).map(drop).expect_err("a sliding window must be refused"));
    assert!(e.contains("sliding-window"), "{e}");
}
