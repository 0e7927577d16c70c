//! LoRA adapters on the real packed model: every adapter trains, the base
//! model does not, adapter directories round-trip, applying at a scale equals
//! baking at that scale, and an adapter that does not fit is refused clearly.

mod common;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use common::*;
use kioku::model::file::{MappedModel, ModelHeader};
use kioku::model::linear::Linear;
use kioku::model::llama::Llama;
use kioku::model::lora::{bake, Adapter, LoraConfig, LoraPair, LoraSet, TargetModules};
use kioku::model::ops::Path;
use kioku::model::peft;
use kioku::model::weights::Weights;
use kioku::model::whisper::{AsrDecoder, WhisperEncoder};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const MODEL_NAME: &str = "kioku-tiny-en.safetensors";
/// "What is the capital of France?" in each tokenizer, with its prompt.
const WHISPER_TOKENS: [u32; 9] = [50257, 50362, 1867, 318, 262, 3139, 286, 4881, 30];
const LLM_TOKENS: [u32; 10] = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47];

fn header() -> ModelHeader {
    MappedModel::open(&model_path()).unwrap().header
}

/// The real model's weights on CPU in f32, with `lora` attached.
fn weights(lora: &Arc<LoraSet>, dense_only: bool) -> Weights {
    MappedModel::open(&model_path())
        .unwrap()
        .weights(&Device::Cpu, DType::F32)
        .unwrap()
        .with_dense_only(dense_only)
        .with_lora(lora.clone())
}

fn training_set(targets: &[&str], dropout: f32) -> Arc<LoraSet> {
    let config = LoraConfig { rank: 4, alpha: 8.0, dropout };
    Arc::new(LoraSet::default().train(config, TargetModules::new(targets).unwrap(), 7).unwrap())
}

/// Gives every B small random values, as if training had moved it.
fn perturb_b(set: &LoraSet) {
    for vars in set.vars().values() {
        vars.b.set(&Tensor::randn(0f32, 0.05, vars.b.shape(), &Device::Cpu).unwrap()).unwrap();
    }
}

fn mel() -> Tensor {
    let samples = kioku::assistant::load_audio_16k(&example_wav()).unwrap();
    kioku::audio::MelExtractor::new(80).compute(&samples).to_tensor(&Device::Cpu).unwrap()
}

fn next_token_loss(logits: &Tensor, tokens: &[u32]) -> Tensor {
    let targets = Tensor::new(&tokens[1..], logits.device()).unwrap();
    candle_nn::loss::cross_entropy(&logits.squeeze(0).unwrap(), &targets).unwrap()
}

fn input(tokens: &[u32]) -> Tensor {
    Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

fn llm_logits(llm: &Llama) -> Tensor {
    let hidden = llm.forward_embeds(&llm.embed(&input(&LLM_TOKENS)).unwrap(), None, Path::Trainable).unwrap();
    llm.logits(&hidden).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn is_zero(t: &Tensor) -> bool {
    t.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0
}

#[test]
fn every_adapter_receives_a_gradient() {
    let set = training_set(
        &[r"llm\.layers\.\d+\.self_attn\.(q|v)_proj", "encoder-attn", r"asr_decoder\.layers\.1\.fc1"],
        0.1,
    );
    let w = weights(&set, true);
    let header = header();
    let encoder = WhisperEncoder::load(&w.pp("encoder"), &header.whisper).unwrap();
    let decoder = AsrDecoder::load(&w.pp("asr_decoder"), &header.whisper).unwrap();
    let llm = Llama::load(&w.pp("llm"), &header.llm).unwrap();
    set.ensure_all_attached().unwrap();
    assert_eq!(set.vars().len(), 30 * 2 + 4 * 4 + 1);
    // B starts at zero, and dL/dA = Bᵀ·(dL/dy)·xᵀ, so A would get an all-zero
    // gradient on this first step even when wired correctly: move B first.
    perturb_b(&set);
    let encoded = encoder.forward(&mel(), Path::Trainable).unwrap();
    let mut state = decoder.start(&encoded).unwrap();
    let asr_loss = next_token_loss(
        &decoder.forward(&input(&WHISPER_TOKENS), &mut state, Path::Trainable).unwrap(),
        &WHISPER_TOKENS,
    );
    let llm_loss = next_token_loss(&llm_logits(&llm), &LLM_TOKENS);
    let grads = (asr_loss + llm_loss).unwrap().backward().unwrap();
    let mut missing = Vec::new();
    for (module, vars) in set.vars() {
        for (factor, var) in [("A", &vars.a), ("B", &vars.b)] {
            if grads.get(var.as_tensor()).is_none_or(is_zero) {
                missing.push(format!("{module}.{factor}"));
            }
        }
    }
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

#[test]
fn training_leaves_the_base_weights_bit_identical() {
    let set = training_set(&["llm-attn"], 0.1);
    let llm = Llama::load(&weights(&set, true).pp("llm"), &header().llm).unwrap();
    set.set_dropout_active(false);
    let before = llm_logits(&llm);
    set.set_dropout_active(true);
    let vars = set.vars();
    let all: Vec<_> = vars.values().flat_map(|v| [v.a.clone(), v.b.clone()]).collect();
    let mut optimizer = AdamW::new(all, ParamsAdamW { lr: 1e-3, ..Default::default() }).unwrap();
    for _ in 0..3 {
        optimizer.backward_step(&next_token_loss(&llm_logits(&llm), &LLM_TOKENS)).unwrap();
    }
    assert!(vars.values().all(|v| !is_zero(v.b.as_tensor())), "AdamW did not move every B");
    // With B back at zero the adapters add exactly nothing, so any change in
    // the logits could only come from a changed base weight.
    for v in vars.values() {
        v.b.set(&v.b.zeros_like().unwrap()).unwrap();
    }
    set.set_dropout_active(false);
    let after = llm_logits(&llm);
    assert_eq!(
        before.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        after.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn saved_adapter_loads_back_with_the_same_tensors_and_outputs() {
    let header = header();
    let set = training_set(&["encoder-attn"], 0.0);
    let encoder = WhisperEncoder::load(&weights(&set, true).pp("encoder"), &header.whisper).unwrap();
    perturb_b(&set);
    let mel = mel();
    let trained_out = encoder.forward(&mel, Path::Fast).unwrap();
    let trained = set.trained().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let adapter_dir = dir.path().join("alice");
    peft::save(&trained, &adapter_dir, &header, MODEL_NAME).unwrap();
    // Saving again replaces the files in place and leaves no temporaries.
    peft::save(&trained, &adapter_dir, &header, MODEL_NAME).unwrap();
    let mut files: Vec<_> =
        std::fs::read_dir(&adapter_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, [peft::CONFIG_FILE, peft::TENSORS_FILE]);

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter_dir.join(peft::CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["bias"], "none");
    // Modules carry Hugging Face names, and the base is the checkpoint
    // Whisper was packed from, so PEFT finds both in WhisperForConditionalGeneration.
    assert_eq!(config["base_model_name_or_path"], "openai/whisper-tiny.en");
    // An encoder adapter is tied to the Whisper component only: a retrained
    // projector or another LLM leaves it valid.
    assert_eq!(config["kioku"]["base_components"], serde_json::json!(["whisper"]));
    assert_eq!(config["kioku"]["base_model_sha256"], header.identity_of(&["whisper"]).unwrap());
    let mut other_projector = header.clone();
    other_projector.projector = None;
    other_projector.provenance.retain(|p| p.component != "projector");
    other_projector.llm.rms_norm_eps *= 2.0;
    assert!(peft::load(&adapter_dir, &other_projector).is_ok());
    let mut other_whisper = header.clone();
    other_whisper.whisper.n_mels += 1;
    assert!(format!("{:#}", peft::load(&adapter_dir, &other_whisper).unwrap_err()).contains("different base model"));
    let targets = config["target_modules"].as_array().unwrap();
    assert_eq!(targets.len(), 16);
    assert!(targets.contains(&serde_json::json!("model.encoder.layers.0.self_attn.q_proj")));
    let keys = candle_core::safetensors::load(adapter_dir.join(peft::TENSORS_FILE), &Device::Cpu).unwrap();
    assert!(keys.contains_key("base_model.model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight"));

    // Adapters written before kept kioku's names in the tensor file; they still load.
    let old_names: HashMap<String, Tensor> = keys
        .iter()
        .map(|(k, t)| (k.replace("base_model.model.model.encoder.", "base_model.model.encoder."), t.clone()))
        .collect();
    let old_dir = dir.path().join("old-names");
    std::fs::create_dir(&old_dir).unwrap();
    std::fs::copy(adapter_dir.join(peft::CONFIG_FILE), old_dir.join(peft::CONFIG_FILE)).unwrap();
    candle_core::safetensors::save(&old_names, old_dir.join(peft::TENSORS_FILE)).unwrap();
    let old = peft::load(&old_dir, &header).unwrap();
    assert_eq!(old.modules.keys().collect::<Vec<_>>(), trained.modules.keys().collect::<Vec<_>>());

    let loaded = peft::load(&adapter_dir, &header).unwrap();
    assert_eq!(loaded.config, trained.config);
    assert_eq!(loaded.modules.keys().collect::<Vec<_>>(), trained.modules.keys().collect::<Vec<_>>());
    for (module, pair) in &trained.modules {
        let back = &loaded.modules[module];
        assert_eq!(max_diff(&pair.a, &back.a), 0.0, "{module} A");
        assert_eq!(max_diff(&pair.b, &back.b), 0.0, "{module} B");
    }
    let applied = Arc::new(LoraSet::default().apply(loaded, 1.0, "alice"));
    let encoder = WhisperEncoder::load(&weights(&applied, true).pp("encoder"), &header.whisper).unwrap();
    applied.ensure_all_attached().unwrap();
    assert!(max_diff(&trained_out, &encoder.forward(&mel, Path::Fast).unwrap()) < 1e-6);
}

/// One linear layer of the real model, with `lora` attached.
fn linear(module: &str, dims: (usize, usize), bias: bool, lora: &Arc<LoraSet>, dense_only: bool) -> Linear {
    Linear::load(&weights(lora, dense_only).pp(module), dims.0, dims.1, bias).unwrap()
}

/// A random adapter on `module`, B included, so that it changes the output.
fn random_adapter(module: &str, (in_dim, out_dim): (usize, usize)) -> Adapter {
    let dev = Device::Cpu;
    let pair = LoraPair {
        a: Tensor::randn(0f32, 0.05, (4, in_dim), &dev).unwrap(),
        b: Tensor::randn(0f32, 0.05, (out_dim, 4), &dev).unwrap(),
    };
    Adapter {
        config: LoraConfig { rank: 4, alpha: 16.0, dropout: 0.0 },
        modules: BTreeMap::from([(module.to_string(), pair)]),
        audio_turns_only: false,
    }
}

#[test]
fn applying_at_a_scale_equals_baking_at_that_scale() {
    let none = Arc::new(LoraSet::default());
    let xs = Tensor::randn(0f32, 1.0, (1, 5, 384), &Device::Cpu).unwrap();
    let (module, dims) = ("encoder.layers.0.fc1", (384, 1536));
    let adapter = random_adapter(module, dims);
    let base = linear(module, dims, true, &none, false).forward(&xs).unwrap();
    let mut stored = BTreeMap::new();
    let plain = weights(&none, false).pp(module);
    stored.insert(format!("{module}.weight"), plain.take("weight", (1536, 384)).unwrap());
    let bias = plain.take("bias", 1536).unwrap();
    for scale in [0.0, 0.5, 1.0, 2.0] {
        let applied = Arc::new(LoraSet::default().apply(adapter.clone(), scale, "random"));
        let with_adapter = linear(module, dims, true, &applied, false).forward(&xs).unwrap();
        let mut baked = stored.clone();
        adapter.bake_into(&mut baked, scale).unwrap();
        let tensors = HashMap::from([
            (format!("{module}.weight"), baked[&format!("{module}.weight")].clone()),
            (format!("{module}.bias"), bias.clone()),
        ]);
        let baked = Linear::load(&Weights::new(tensors, DType::F32, &Device::Cpu).pp(module), 384, 1536, true).unwrap();
        let diff = max_diff(&with_adapter, &baked.forward(&xs).unwrap());
        assert!(diff < 1e-5, "scale {scale}: applied and baked differ by {diff}");
        if scale == 0.0 {
            assert_eq!(max_diff(&with_adapter, &base), 0.0, "scale 0 must be the base layer");
        } else {
            assert!(max_diff(&with_adapter, &base) > 1e-3, "scale {scale} changed nothing");
        }
    }
}

/// On a q8 layer the adapter term rides on the quantized kernel: the change
/// it makes equals the change baking makes to the dequantized weight.
#[test]
fn adapter_on_a_quantized_layer_adds_the_baked_difference() {
    let none = Arc::new(LoraSet::default());
    let (module, dims) = ("llm.layers.0.self_attn.q_proj", (576, 576));
    let adapter = random_adapter(module, dims);
    let xs = Tensor::randn(0f32, 1.0, (1, 3, 576), &Device::Cpu).unwrap();
    let applied = Arc::new(LoraSet::default().apply(adapter.clone(), 0.5, "random"));
    let q8_delta = (linear(module, dims, false, &applied, false).forward(&xs).unwrap()
        - linear(module, dims, false, &none, false).forward(&xs).unwrap())
    .unwrap();
    let dense = weights(&none, true).pp(module).take("weight", (576, 576)).unwrap();
    let pair = &adapter.modules[module];
    let baked = bake(&dense, &pair.a, &pair.b, 0.5 * adapter.config.scaling()).unwrap();
    let dense_delta = xs.broadcast_matmul(&(baked - dense).unwrap().t().unwrap()).unwrap();
    assert!(max_diff(&q8_delta, &dense_delta) < 1e-4);
}

fn error_of(result: anyhow::Result<impl Sized>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn adapters_that_do_not_fit_are_refused_with_a_clear_error() {
    let header = header();
    let dir = tempfile::tempdir().unwrap();
    let save = |name: &str, adapter: &Adapter, base: &ModelHeader| {
        let path = dir.path().join(name);
        peft::save(adapter, &path, base, MODEL_NAME).unwrap();
        path
    };
    let fc1 = ("encoder.layers.0.fc1", (384, 1536));

    let mut other = header.clone();
    other.provenance[0].version = Some("9.9.9".into());
    let path = save("other-base", &random_adapter(fc1.0, fc1.1), &other);
    let e = error_of(peft::load(&path, &header));
    assert!(e.contains("cannot load adapter") && e.contains("different base model"), "{e}");

    let path = save("missing-tensors", &random_adapter(fc1.0, fc1.1), &header);
    std::fs::remove_file(path.join(peft::TENSORS_FILE)).unwrap();
    let e = error_of(peft::load(&path, &header));
    assert!(e.contains("adapter_model.safetensors not found"), "{e}");

    let e = error_of(peft::load(&dir.path().join("nowhere"), &header));
    assert!(e.contains("adapter_config.json not found"), "{e}");

    let path = save("wrong-rank", &random_adapter(fc1.0, fc1.1), &header);
    let config = std::fs::read_to_string(path.join(peft::CONFIG_FILE)).unwrap().replace("\"r\": 4", "\"r\": 8");
    std::fs::write(path.join(peft::CONFIG_FILE), config).unwrap();
    let e = error_of(peft::load(&path, &header));
    assert!(e.contains("rank r=8"), "{e}");

    let load_encoder = |path: &std::path::Path| -> anyhow::Result<()> {
        let set = Arc::new(peft::load_all(&[peft::AdapterSpec { path: path.to_path_buf(), scale: 1.0 }], &header)?);
        WhisperEncoder::load(&weights(&set, false).pp("encoder"), &header.whisper)?;
        set.ensure_all_attached()
    };
    // An adapter from elsewhere (no `kioku` fields, as PEFT writes them) is
    // checked by the checkpoint it names, where that is a Hugging Face id.
    let foreign = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let path = save(name, &random_adapter(fc1.0, fc1.1), &header);
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.join(peft::CONFIG_FILE)).unwrap()).unwrap();
        config.as_object_mut().unwrap().remove("kioku");
        edit(&mut config);
        std::fs::write(path.join(peft::CONFIG_FILE), config.to_string()).unwrap();
        path
    };
    assert!(peft::load(&foreign("peft-same-base", &|_| {}), &header).is_ok());
    let local = foreign("peft-local-base", &|c| c["base_model_name_or_path"] = "/tmp/my-whisper".into());
    assert!(peft::load(&local, &header).is_ok(), "a local path is left to the shape checks");
    let other = foreign("peft-other-base", &|c| c["base_model_name_or_path"] = "openai/whisper-small".into());
    let e = error_of(peft::load(&other, &header));
    assert!(e.contains("trained on openai/whisper-small, but this model's whisper is openai/whisper-tiny.en"), "{e}");
    let saved = foreign("peft-modules-to-save", &|c| c["modules_to_save"] = serde_json::json!(["lm_head"]));
    assert!(error_of(peft::load(&saved, &header)).contains("modules_to_save"));

    let path = save("wrong-shape", &random_adapter(fc1.0, (384, 1000)), &header);
    let e = error_of(load_encoder(&path));
    assert!(e.contains("lora_B.weight` has shape [1000, 4]") && e.contains("needs [1536, 4]"), "{e}");

    let path = save("no-such-module", &random_adapter("encoder.layers.9.fc1", fc1.1), &header);
    let e = error_of(load_encoder(&path));
    assert!(e.contains("`encoder.layers.9.fc1`, which is not a linear layer"), "{e}");

    let quantized = training_set(&["llm-attn"], 0.0);
    let e = error_of(Llama::load(&weights(&quantized, false).pp("llm"), &header.llm));
    assert!(
        e.contains("`llm.layers.0.self_attn.q_proj` is packed for inference; training adapters needs dense weights"),
        "{e}"
    );

    let typo = training_set(&["llm-atn"], 0.0);
    WhisperEncoder::load(&weights(&typo, false).pp("encoder"), &header.whisper).unwrap();
    let e = error_of(typo.ensure_all_attached());
    assert!(e.contains("`llm-atn` matches no linear layer"), "{e}");
}

#[test]
fn ask_applies_adapters_given_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let adapter_dir = dir.path().join("speaker");
    peft::save(&random_adapter("llm.layers.0.self_attn.q_proj", (576, 576)), &adapter_dir, &header(), MODEL_NAME)
        .unwrap();
    let adapter = adapter_dir.to_str().unwrap();
    let half = format!("{adapter}:0.5");
    let out = kioku(&[
        "ask",
        "--text",
        "What is the capital of France?",
        "--max-tokens",
        "8",
        "--adapter",
        adapter,
        "--adapter",
        &half,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());

    let missing = dir.path().join("nobody");
    let out = kioku(&["ask", "--text", "Hi", "--adapter", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: cannot load adapter") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn export_adapter_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let one_line_error = |args: &[&str]| {
        let run = kioku(args);
        assert!(!run.status.success());
        let err = stderr(&run);
        assert!(err.starts_with("error: ") && err.trim().lines().count() == 1, "{err}");
        err
    };
    let missing = dir.path().join("nobody");
    let err = one_line_error(&["export-adapter", missing.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(err.contains("cannot load adapter"), "{err}");

    let whisper_only = dir.path().join("whisper-only");
    peft::save(&random_adapter("encoder.layers.0.fc1", (384, 1536)), &whisper_only, &header(), MODEL_NAME).unwrap();
    let err = one_line_error(&["export-adapter", whisper_only.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(err.contains("no LLM module"), "{err}");
    assert!(!out.exists(), "a refused export writes nothing");
}
