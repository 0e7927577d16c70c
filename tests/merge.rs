//! `kioku merge` on the real packed model: baking an adapter at a discount γ
//! gives the outputs of applying it at scale γ, γ = 0 gives the base back bit
//! for bit, model inputs merge by their task vectors, TIES and DARE follow
//! their papers on hand-made numbers, the merged file runs, and bad inputs
//! are refused with one clear line.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use kioku::adapt::merge::combine::{combine, drop_and_rescale, trim};
use kioku::adapt::merge::{merge, Input, InputKind, Method};
use kioku::model::file::{MappedModel, ModelHeader};
use kioku::model::llama::Llama;
use kioku::model::lora::{Adapter, LoraConfig, LoraPair, LoraSet};
use kioku::model::ops::Path as OpsPath;
use kioku::model::peft;
use kioku::model::whisper::{AsrDecoder, WhisperEncoder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// "What is the capital of France?" in each tokenizer, with its prompt.
const WHISPER_TOKENS: [u32; 9] = [50257, 50362, 1867, 318, 262, 3139, 286, 4881, 30];
const LLM_TOKENS: [u32; 10] = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47];

fn header() -> ModelHeader {
    MappedModel::open(&model_path()).unwrap().header
}

/// A seeded random adapter (r=4, α=16) on each of `modules` (name, (in, out)),
/// its factors uniform in ±`spread`.
fn adapter(modules: &[(&str, (usize, usize))], seed: u64, spread: f32) -> Adapter {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut random = |shape: (usize, usize)| {
        let values = (0..shape.0 * shape.1).map(|_| rng.random_range(-spread..spread)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    };
    let modules = modules
        .iter()
        .map(|(m, (i, o))| (m.to_string(), LoraPair { a: random((4, *i)), b: random((*o, 4)) }))
        .collect();
    Adapter { config: LoraConfig { rank: 4, alpha: 16.0, dropout: 0.0 }, modules, audio_turns_only: false }
}

fn save_adapter(adapter: &Adapter, dir: &Path, base: &ModelHeader) -> PathBuf {
    peft::save(adapter, dir, base, "kioku-tiny-en.safetensors").unwrap();
    dir.to_path_buf()
}

fn input(kind: InputKind, path: &Path, weight: f64) -> Input {
    Input { kind, path: path.to_path_buf(), weight }
}

/// The weights of the model file `path` in f32 on the CPU, `adapter` applied at `scale`.
fn weights(path: &Path, adapter: Option<(&Adapter, f64)>) -> kioku::model::weights::Weights {
    let set = match adapter {
        Some((a, scale)) => LoraSet::default().apply(a.clone(), scale, "test"),
        None => LoraSet::default(),
    };
    MappedModel::open(path).unwrap().weights(&Device::Cpu, DType::F32).unwrap().with_lora(Arc::new(set))
}

fn prefix(tokens: &[u32]) -> Tensor {
    Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// The ASR decoder's logits for the example WAV and its transcript's tokens.
fn whisper_logits(path: &Path, adapter: Option<(&Adapter, f64)>) -> Tensor {
    let (w, config) = (weights(path, adapter), header().whisper);
    let samples = kioku::assistant::load_audio_16k(&example_wav()).unwrap();
    let mel = kioku::audio::MelExtractor::new(config.n_mels).compute(&samples).to_tensor(&Device::Cpu).unwrap();
    let encoded = WhisperEncoder::load(&w.pp("encoder"), &config).unwrap().forward(&mel, OpsPath::Fast).unwrap();
    let decoder = AsrDecoder::load(&w.pp("asr_decoder"), &config).unwrap();
    let mut state = decoder.start(&encoded).unwrap();
    decoder.forward(&prefix(&WHISPER_TOKENS), &mut state, OpsPath::Fast).unwrap()
}

/// The LLM's logits for the question's tokens.
fn llm_logits(path: &Path, adapter: Option<(&Adapter, f64)>) -> Tensor {
    let llm = Llama::load(&weights(path, adapter).pp("llm"), &header().llm).unwrap();
    let hidden = llm.forward_embeds(&llm.embed(&prefix(&LLM_TOKENS)).unwrap(), None, OpsPath::Fast).unwrap();
    llm.logits(&hidden).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn error_of(result: anyhow::Result<impl Sized>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// Merges `adapter` (saved in `dir`) into the default model at `scale`.
fn bake_at(adapter: &Adapter, scale: f64, dir: &Path) -> PathBuf {
    let adapter_dir = save_adapter(adapter, &dir.join(format!("adapter-{scale}")), &header());
    let out = dir.join(format!("baked-{scale}.safetensors"));
    let summary =
        merge(&model_path(), &[input(InputKind::Adapter, &adapter_dir, scale)], Method::Linear, &out).unwrap();
    assert_eq!(summary.changed, if scale == 0.0 { 0 } else { adapter.modules.len() });
    out
}

type Logits = fn(&Path, Option<(&Adapter, f64)>) -> Tensor;

/// Bakes `adapter` at `scale` and compares `logits` of the baked file with
/// those of the base with the adapter applied at `scale`, within `tolerance`.
/// Returns the baked file (in `dir`).
fn assert_baked_equals_applied(adapter: &Adapter, scale: f64, logits: Logits, tolerance: f32, dir: &Path) -> PathBuf {
    let out = bake_at(adapter, scale, dir);
    let (baked, applied, base) =
        (logits(&out, None), logits(&model_path(), Some((adapter, scale))), logits(&model_path(), None));
    let (diff, effect) = (max_diff(&baked, &applied), max_diff(&applied, &base));
    eprintln!("logits: baked vs applied {diff}, applied vs base {effect}");
    assert!(effect > 1.0, "the adapter barely changes the logits ({effect}), so the test shows nothing");
    assert!(diff < tolerance, "baked and applied logits differ by {diff}");
    out
}

/// Dense f16 Whisper layers: the baked weight `W + γ·(α/r)·B·A` is rounded to
/// f16 once (relative error ≤ 2⁻¹¹ ≈ 5e-4 per weight), while applying keeps
/// the adapter's term in f32, so the logits agree to that rounding only
/// (measured 0.0033 against an adapter effect of 5.9).
#[test]
fn baking_whisper_adapters_at_a_discount_equals_applying_them_at_that_scale() {
    let dir = tempfile::tempdir().unwrap();
    let modules = [
        ("encoder.layers.0.fc1", (384, 1536)),
        ("encoder.layers.2.self_attn.v_proj", (384, 384)),
        ("asr_decoder.layers.1.self_attn.q_proj", (384, 384)),
        ("asr_decoder.layers.3.fc2", (1536, 384)),
    ];
    let out = assert_baked_equals_applied(&adapter(&modules, 1, 0.08), 0.5, whisper_logits, 0.02, dir.path());
    // Whisper's stored silence keys and values are its own projections: they go once it changes.
    assert!(stores_silence_keys_and_values(&model_path()), "the default model stores them");
    assert!(!stores_silence_keys_and_values(&out));
}

fn stores_silence_keys_and_values(path: &Path) -> bool {
    MappedModel::open(path).unwrap().names().iter().any(|name| name.starts_with("asr_decoder.silence_kv."))
}

/// q8 LLM layers: the baked weight is re-quantized to Q8_0, whose step is
/// 1/127 of each 32-value block's largest magnitude: fresh rounding of whole
/// weights, not of the small change alone, so the agreement is looser than on
/// f16 layers (measured 0.055 against an adapter effect of 2.0).
#[test]
fn baking_an_llm_adapter_into_q8_layers_equals_applying_it_at_that_scale() {
    let dir = tempfile::tempdir().unwrap();
    let modules = [
        ("llm.layers.0.self_attn.q_proj", (576, 576)),
        ("llm.layers.9.self_attn.v_proj", (576, 192)),
        ("llm.layers.4.mlp.down_proj", (1536, 576)),
    ];
    let out = assert_baked_equals_applied(&adapter(&modules, 2, 0.15), 0.75, llm_logits, 0.15, dir.path());
    let q_proj = MappedModel::open(&out).unwrap().block_type("llm.layers.0.self_attn.q_proj.weight");
    assert_eq!(q_proj, Some(candle_core::quantized::GgmlDType::Q8_0), "re-quantized to the base's block type");
    assert!(stores_silence_keys_and_values(&out), "an LLM adapter leaves Whisper's stored projections alone");
}

#[test]
fn zero_weight_gives_the_base_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let adapter =
        adapter(&[("encoder.layers.0.fc1", (384, 1536)), ("llm.layers.0.self_attn.q_proj", (576, 576))], 3, 0.08);
    let out = bake_at(&adapter, 0.0, dir.path());
    let (base, merged) = (MappedModel::open(&model_path()).unwrap(), MappedModel::open(&out).unwrap());
    assert_eq!(merged.names(), base.names());
    for name in base.names() {
        assert!(merged.stored_equal(&base, &name).unwrap(), "`{name}` changed");
    }
    // Same tensors, yet a model of its own: the record says how it was made.
    let record = merged.header.merge.as_ref().expect("a merge record");
    assert_eq!(record["method"]["method"], "linear");
    assert_eq!(record["base"]["identity"], base.header.base_identity().unwrap());
    assert_eq!(record["inputs"][0]["kind"], "adapter");
    assert_eq!(record["inputs"][0]["weight"], 0.0);
    assert_eq!(record["inputs"][0]["adapter_config"]["r"], 4);
    assert_ne!(merged.header.base_identity().unwrap(), base.header.base_identity().unwrap());
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance, "element {i}: got {g}, want {w} (got {got:?})");
    }
}

#[test]
fn ties_trims_by_magnitude_elects_signs_and_averages_the_agreeing_entries() {
    let tau1 = [0.5f32, -0.1, 0.3, -0.8];
    assert_eq!(trim(&tau1, 0.5), [0.5, 0.0, 0.0, -0.8]);
    assert_eq!(trim(&tau1, 0.25), [0.0, 0.0, 0.0, -0.8]);
    assert_eq!(trim(&tau1, 1.0), tau1);
    let (tau2, tau3) = ([-0.2f32, -0.4, 0.1, 0.6], [0.3f32, 0.1, -0.9, 0.7]);
    let taus: [&[f32]; 3] = [&tau1, &tau2, &tau3];
    // Kept: [0.5, 0, 0, -0.8], [0, -0.4, 0, 0.6], [0, 0, -0.9, 0.7]. The last
    // element's sum (+0.5) elects +, so -0.8 is left out of the mean of 0.6 and 0.7.
    let ties = Method::Ties { density: 0.5 };
    assert_close(&combine(&taus, &[1.0; 3], &ties, "t"), &[0.5, -0.4, -0.9, 0.65], 1e-6);
    // Weights count before the vote: doubled, -1.6 outweighs 0.6 + 0.7.
    assert_close(&combine(&taus, &[2.0, 1.0, 1.0], &ties, "t"), &[1.0, -0.4, -0.9, -1.6], 1e-6);
    // A tie in the vote cancels; at density 1 a single input is the linear merge.
    assert_eq!(combine(&[&[0.5], &[-0.5]], &[1.0, 1.0], &ties, "t"), [0.0]);
    let dense = Method::Ties { density: 1.0 };
    assert_eq!(combine(&[&tau2], &[0.5], &dense, "t"), combine(&[&tau2], &[0.5], &Method::Linear, "t"));
    assert!(Method::Ties { density: 0.0 }.validate().is_err() && Method::Ties { density: 1.5 }.validate().is_err());
}

#[test]
fn dare_without_drops_is_linear_and_with_drops_is_seeded_and_unbiased() {
    let tau1: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) / 4.0).collect();
    let tau2: Vec<f32> = (0..8).map(|i| ((i * 5) % 8) as f32 / 8.0 - 0.3).collect();
    let taus: [&[f32]; 2] = [&tau1, &tau2];
    let weights = [0.7, 0.4];
    let linear = combine(&taus, &weights, &Method::Linear, "t");
    assert_eq!(combine(&taus, &weights, &Method::Dare { drop_rate: 0.0, seed: 9 }, "t"), linear);
    let ties = Method::Ties { density: 0.5 };
    assert_eq!(
        combine(&taus, &weights, &Method::DareTies { drop_rate: 0.0, density: 0.5, seed: 9 }, "t"),
        combine(&taus, &weights, &ties, "t")
    );

    let dare = |seed| combine(&taus, &weights, &Method::Dare { drop_rate: 0.5, seed }, "t");
    assert_eq!(dare(1), dare(1));
    assert_ne!(dare(1), dare(2));
    assert_ne!(dare(1), combine(&taus, &weights, &Method::Dare { drop_rate: 0.5, seed: 1 }, "another tensor"));
    let kept = drop_and_rescale(&vec![1.0; 10_000], 0.3, 5);
    let dropped = kept.iter().filter(|v| **v == 0.0).count();
    assert!((2_850..3_150).contains(&dropped), "{dropped} of 10000 dropped at p = 0.3");
    assert!(kept.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
    // At p = 0.5 an element's estimate has variance Σ_i (w_i·τ_i)² per seed;
    // the mean over 2000 seeds must land within five of its standard errors.
    let seeds = 2000;
    let mut mean = vec![0f32; linear.len()];
    for seed in 0..seeds {
        mean.iter_mut().zip(dare(seed)).for_each(|(m, v)| *m += v / seeds as f32);
    }
    for j in 0..linear.len() {
        let variance: f32 = taus.iter().zip(weights).map(|(t, w)| (t[j] * w as f32).powi(2)).sum();
        let standard_error = (variance / seeds as f32).sqrt();
        assert!(
            (mean[j] - linear[j]).abs() <= 5.0 * standard_error,
            "element {j}: mean over seeds {}, linear {}",
            mean[j],
            linear[j]
        );
    }
    assert!(Method::Dare { drop_rate: 1.0, seed: 0 }.validate().is_err());
}

/// Q8_0's rounding step for each element of `t` (rows, cols): its 32-value
/// block's largest magnitude / 127.
fn q8_step(t: &Tensor) -> Tensor {
    let (rows, cols) = t.dims2().unwrap();
    let blocks = t.abs().unwrap().reshape((rows, cols / 32, 32)).unwrap();
    let step = (blocks.max_keepdim(2).unwrap() / 127.0).unwrap();
    step.broadcast_as((rows, cols / 32, 32)).unwrap().reshape((rows, cols)).unwrap()
}

/// A whole fine-tuned model merges by its task vector: half of a model baked
/// at weight 1 is the model baked at 0.5, up to storage rounding.
#[test]
fn model_inputs_merge_by_their_task_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let modules = [("encoder.layers.1.fc2", (1536, 384)), ("llm.layers.2.self_attn.o_proj", (576, 576))];
    let adapter = adapter(&modules, 4, 0.15);
    let (full, half) = (bake_at(&adapter, 1.0, dir.path()), bake_at(&adapter, 0.5, dir.path()));
    let merge_full = |method, out: &Path| {
        let summary = merge(&model_path(), &[input(InputKind::Model, &full, 0.5)], method, out).unwrap();
        assert_eq!((summary.changed, summary.record["inputs"][0]["kind"].as_str()), (2, Some("model")));
        MappedModel::open(out).unwrap()
    };
    let linear = merge_full(Method::Linear, &dir.path().join("linear.safetensors"));
    let models = [
        &linear,
        &MappedModel::open(&half).unwrap(),
        &MappedModel::open(&full).unwrap(),
        &MappedModel::open(&model_path()).unwrap(),
    ];
    for (module, _) in modules {
        let name = format!("{module}.weight");
        let [got, want, full, base] = models.map(|m| m.dense_f32(&name).unwrap());
        let (diff, change) = (max_diff(&got, &want), max_diff(&want, &base));
        eprintln!("{name}: merged model vs baked at 0.5 {diff}, change {change}");
        if models[0].block_type(&name).is_some() {
            // got = q8(W + τ/2) with τ = q8(W + Δ) − W, want = q8(W + Δ/2): each
            // rounding is at most half a step (plus the f16 rounding of the
            // step itself), so they differ by at most ~1.25 steps.
            let slack =
                (q8_step(&got).maximum(&q8_step(&want)).unwrap().maximum(&q8_step(&full)).unwrap() * 1.5).unwrap();
            let excess =
                ((&got - &want).unwrap().abs().unwrap() - slack).unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(excess.to_scalar::<f32>().unwrap() <= 0.0, "{name}: differs by more than 1.5 Q8_0 steps");
        } else {
            // f16: a few units in the last place against the change.
            assert!(diff < 0.01 * change, "{name}: {diff} against a change of {change}");
        }
    }
    // TIES keeping everything of a single input is the linear merge, bit for bit.
    let ties = merge_full(Method::Ties { density: 1.0 }, &dir.path().join("ties.safetensors"));
    assert_eq!(ties.names(), linear.names());
    assert!(linear.names().iter().all(|name| ties.stored_equal(&linear, name).unwrap()));
}

#[test]
fn a_merged_model_answers_and_refuses_adapters_trained_on_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = adapter(&[("llm.layers.1.self_attn.q_proj", (576, 576))], 5, 0.08);
    let merged = bake_at(&adapter, 0.5, dir.path());
    let merged = merged.to_str().unwrap();
    let out = kioku(&["ask", "--model", merged, "--text", "What is the capital of France?", "--max-tokens", "12"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Paris"), "{}", stdout(&out));
    let out = kioku(&["info", merged]);
    assert!(out.status.success() && stdout(&out).contains("merged by `kioku merge` (linear)"), "{}", stdout(&out));

    let base_adapter = dir.path().join("adapter-0.5");
    let out = kioku(&["ask", "--model", merged, "--text", "Hi", "--adapter", base_adapter.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("different base model") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn bad_inputs_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let header = header();
    let fc1 = [("encoder.layers.0.fc1", (384, 1536))];
    let try_merge = |kind, path: &Path| error_of(merge(&model_path(), &[input(kind, path, 1.0)], Method::Linear, &out));

    let mut other = header.clone();
    other.provenance[0].version = Some("9.9.9".into());
    let e =
        try_merge(InputKind::Adapter, &save_adapter(&adapter(&fc1, 6, 0.1), &dir.path().join("other-base"), &other));
    assert!(e.contains("cannot load adapter") && e.contains("different base model"), "{e}");

    let e = try_merge(
        InputKind::Adapter,
        &save_adapter(
            &adapter(&[("encoder.layers.0.fc9", (384, 1536))], 6, 0.1),
            &dir.path().join("no-such-layer"),
            &header,
        ),
    );
    assert!(e.contains("adapts `encoder.layers.0.fc9`, which is not a linear layer"), "{e}");

    let mut deeper = header.clone();
    deeper.llm.num_hidden_layers += 1;
    let other_arch = dir.path().join("other-arch.safetensors");
    let tensors =
        BTreeMap::from([("llm.norm.weight".to_string(), Tensor::ones(576, DType::F32, &Device::Cpu).unwrap())]);
    kioku::model::file::write(&other_arch, &deeper, &tensors, DType::F16, |_| None).unwrap();
    let e = try_merge(InputKind::Model, &other_arch);
    assert!(e.contains("is not a fine-tune of the base model's architecture: its LLM configuration differs"), "{e}");

    let not_a_model = dir.path().join("notes.txt");
    std::fs::write(&not_a_model, "hello").unwrap();
    let e = try_merge(InputKind::Model, &not_a_model);
    assert!(e.contains("not a safetensors file"), "{e}");
    assert!(!out.exists(), "a failed merge wrote its output");

    let adapter_dir = dir.path().join("good");
    save_adapter(&adapter(&fc1, 6, 0.1), &adapter_dir, &header);
    let cli_error = |args: &[&str]| {
        let result = kioku(&[&["merge", "-o", out.to_str().unwrap()], args].concat());
        assert!(!result.status.success(), "{args:?} succeeded");
        let err = stderr(&result);
        assert!(err.trim().lines().count() == 1, "{err}");
        err
    };
    let typo = format!("{}:0.5x", adapter_dir.display());
    assert!(cli_error(&["--adapter", &typo]).contains("`0.5x` after the last ':' is not a number"));
    let good = adapter_dir.to_str().unwrap();
    assert!(cli_error(&["--adapter", good, "--method", "ties", "--density", "1.5"])
        .contains("TIES density must be in (0, 1], got 1.5"));
    assert!(cli_error(&["--adapter", good, "--method", "dare", "--drop-rate", "1"])
        .contains("DARE drop rate must be in [0, 1), got 1"));
    assert!(cli_error(&[]).contains("nothing to merge"));
    assert!(!out.exists(), "a failed merge wrote its output");
}
