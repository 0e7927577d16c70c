//! LoRA adapters on any [`Linear`](super::linear::Linear), with llama.cpp's
//! scale: `y = W·x + s·(α/r)·B·(A·x)`, A (r, in), B (out, r). `s` is chosen per
//! run (docs/DESIGN.md, "Forgetting, and the remedies kioku offers":
//! discounting it below 1 trades new skill for less forgetting); baking writes
//! `W + s·(α/r)·B·A`.
//!
//! A [`LoraSet`] travels inside [`Weights`](super::weights::Weights): every
//! `Linear` asks it for the adapters of its module name as it loads. The set
//! holds adapters read from files (applied at fixed scales) and, for training,
//! target patterns for which it creates fresh variables, so that once a model
//! is loaded the set holds every trainable tensor and nothing else: the base
//! weights stay plain tensors, out of the optimizer's reach. It also records
//! the shape of every linear layer, so that adapters switched per call
//! ([`super::adapter_scope`]) can be checked against the loaded model.

use super::ops::matmul_t;
use super::packed::LowRank;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use regex::Regex;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Probability of zeroing an input element before A, while training only.
    pub dropout: f32,
}

impl LoraConfig {
    /// `α/r`: the factor B·A is multiplied by at scale 1.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The two low-rank factors of one module.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// (rank, in)
    pub a: Tensor,
    /// (out, rank)
    pub b: Tensor,
}

/// Whether `module` belongs to the LLM (the modules the audio-turn gate applies to).
pub fn is_llm(module: &str) -> bool {
    module.strip_prefix(super::components::LLM).is_some_and(|rest| rest.starts_with('.'))
}

/// An adapter as stored: one configuration and the factors of each module it adapts.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub config: LoraConfig,
    pub modules: BTreeMap<String, LoraPair>,
    /// Its LLM modules act on audio turns only, as the speech adapter does:
    /// typed questions and the cascade's transcripts get the unchanged LLM.
    pub audio_turns_only: bool,
}

impl Adapter {
    /// Pairs factors named `<module>.lora_A` and `<module>.lora_B` into an
    /// adapter, checking that each pair is complete and of the config's rank.
    pub fn from_factors(config: LoraConfig, named: impl IntoIterator<Item = (String, Tensor)>) -> Result<Self> {
        let rank = config.rank;
        if rank == 0 {
            bail!("rank r must be at least 1");
        }
        let mut factors: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (key, t) in named {
            let (module, is_a) = match key.rsplit_once('.') {
                Some((module, "lora_A")) => (module, true),
                Some((module, "lora_B")) => (module, false),
                _ => bail!("unexpected tensor `{key}` (expected `<module>.lora_A` or `<module>.lora_B`)"),
            };
            let entry = factors.entry(module.to_string()).or_default();
            let t = t.to_dtype(DType::F32)?;
            if is_a {
                entry.0 = Some(t)
            } else {
                entry.1 = Some(t)
            }
        }
        if factors.is_empty() {
            bail!("no LoRA tensors");
        }
        let modules = factors
            .into_iter()
            .map(|(module, pair)| {
                let (Some(a), Some(b)) = pair else { bail!("`{module}` needs both lora_A and lora_B") };
                if a.dims().len() != 2 || b.dims().len() != 2 || a.dim(0)? != rank || b.dim(1)? != rank {
                    bail!(
                        "`{module}`: lora_A {:?} and lora_B {:?} do not have the config's rank r={rank}",
                        a.dims(),
                        b.dims()
                    );
                }
                Ok((module, LoraPair { a, b }))
            })
            .collect::<Result<_>>()?;
        Ok(Self { config, modules, audio_turns_only: false })
    }

    /// The same adapter with its LLM modules ([`is_llm`]) at `scale` times their strength: their
    /// B factors are multiplied by it, so every loader (PEFT, llama.cpp, kioku) applies the
    /// discount without being told, and the other modules stay as they are.
    pub fn with_llm_scaled(mut self, scale: f64) -> Result<Self> {
        for (_, pair) in self.modules.iter_mut().filter(|(module, _)| is_llm(module)) {
            pair.b = (&pair.b * scale)?;
        }
        Ok(self)
    }

    /// Bakes the adapter at `scale` into `tensors` (module `m` -> `m.weight`),
    /// as `kioku merge` does.
    pub fn bake_into(&self, tensors: &mut BTreeMap<String, Tensor>, scale: f64) -> Result<()> {
        for (module, pair) in &self.modules {
            let name = format!("{module}.weight");
            let weight = tensors
                .get(&name)
                .with_context(|| format!("the model has no tensor `{name}` to merge the adapter into"))?;
            let baked = bake(weight, &pair.a, &pair.b, scale * self.config.scaling())?;
            tensors.insert(name, baked);
        }
        Ok(())
    }
}

/// `W + factor·B·A`, computed in f32 and returned in W's dtype and device;
/// `factor` is `s·α/r`.
pub fn bake(weight: &Tensor, a: &Tensor, b: &Tensor, factor: f64) -> Result<Tensor> {
    let (out, inp) = weight.dims2()?;
    let (rank, a_in) = a.dims2()?;
    let (b_out, b_rank) = b.dims2()?;
    if (a_in, b_out, b_rank) != (inp, out, rank) {
        bail!("LoRA factors A {:?} and B {:?} do not fit a {out}x{inp} weight", a.dims(), b.dims());
    }
    let f32_on = |t: &Tensor| t.to_device(weight.device())?.to_dtype(DType::F32);
    let delta = (f32_on(b)?.matmul(&f32_on(a)?)? * factor)?;
    Ok((weight.to_dtype(DType::F32)? + delta)?.to_dtype(weight.dtype())?)
}

/// Which modules a training run adapts: preset names or regular expressions
/// that must match a whole module name (`llm.layers.3.self_attn.q_proj`).
#[derive(Debug, Clone)]
pub struct TargetModules {
    patterns: Vec<(String, Regex)>,
}

/// Named target sets, as regular expressions over module names.
pub const TARGET_PRESETS: [(&str, &str); 5] = [
    ("llm-attn", r"llm\.layers\.\d+\.self_attn\.[qkvo]_proj"),
    ("llm-all", r"llm\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"),
    ("encoder-attn", r"encoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj"),
    ("decoder", r"asr_decoder\.layers\.\d+\..+"),
    ("projector", r"projector\.linear_[12]"),
];

/// What the speech adapter (trained with the projector) adapts: every LLM projection.
pub const SPEECH_LORA_TARGETS: &str = "llm-all";

impl TargetModules {
    pub fn new<S: AsRef<str>>(specs: &[S]) -> Result<Self> {
        if specs.is_empty() {
            bail!("no LoRA target modules given");
        }
        let patterns = specs
            .iter()
            .map(|spec| {
                let spec = spec.as_ref();
                let pattern = TARGET_PRESETS.iter().find(|(name, _)| *name == spec).map_or(spec, |(_, p)| p);
                let regex = Regex::new(&format!("^(?:{pattern})$"))
                    .with_context(|| format!("LoRA target `{spec}` is not a preset or a valid regular expression"))?;
                Ok((spec.to_string(), regex))
            })
            .collect::<Result<_>>()?;
        Ok(Self { patterns })
    }

    /// Whether `module` (a whole module name) is one of the targets.
    pub fn matches(&self, module: &str) -> bool {
        self.patterns.iter().any(|(_, r)| r.is_match(module))
    }
}

/// Dropout on the adapter's input, on while training. The mask comes from a
/// seeded host RNG, so runs repeat on any device (candle cannot seed its CPU RNG).
#[derive(Debug, Clone)]
struct Dropout {
    p: f32,
    active: Arc<AtomicBool>,
    rng: Arc<Mutex<StdRng>>,
}

impl Dropout {
    fn apply(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if !self.active.load(Ordering::Relaxed) {
            return Ok(xs.clone());
        }
        let keep = 1.0 - self.p;
        let mask: Vec<f32> = {
            let mut rng = lock(&self.rng);
            (0..xs.elem_count()).map(|_| if rng.random::<f32>() < keep { 1.0 / keep } else { 0.0 }).collect()
        };
        xs * Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?
    }
}

/// One adapter attached to one `Linear`.
#[derive(Debug, Clone)]
pub(crate) struct LoraLayer {
    a: Tensor,
    b: Tensor,
    /// `s·α/r` (1 for a fixed adapter, whose B holds it already)
    factor: f64,
    dropout: Option<Dropout>,
    /// Its factors are variables of a training run.
    trainable: bool,
    /// A fixed adapter on the CPU, which the packed kernel adds in its own op.
    low_rank: Option<Arc<LowRank>>,
    /// Acts only while an audio turn is open ([`super::audio_turn`]).
    audio_turns_only: bool,
}

impl LoraLayer {
    pub(crate) fn is_trainable(&self) -> bool {
        self.trainable
    }

    /// A fixed adapter: `factor` (`s·α/r`) is folded into B once, saving an op per token.
    pub(crate) fn fixed(pair: &LoraPair, factor: f64, device: &Device, dtype: DType) -> Result<Self> {
        let a = pair.a.to_device(device)?.to_dtype(dtype)?;
        let b = (pair.b.to_device(device)?.to_dtype(DType::F32)? * factor)?.to_dtype(dtype)?;
        let low_rank = device.is_cpu().then(|| LowRank::new(&a, &b)).transpose()?.map(Arc::new);
        Ok(Self { a, b, factor: 1.0, dropout: None, trainable: false, low_rank, audio_turns_only: false })
    }

    /// This layer, acting only inside audio turns when `gated`.
    pub(crate) fn gated(self, gated: bool) -> Self {
        Self { audio_turns_only: gated, ..self }
    }

    /// Whether the layer acts now: always, or inside an audio turn if gated.
    pub(crate) fn acts_now(&self) -> bool {
        !self.audio_turns_only || super::audio_turn::is_open()
    }

    pub(crate) fn low_rank(&self) -> Option<&LowRank> {
        self.low_rank.as_deref()
    }

    /// The adapter's term `scale·factor·B·(A·x)`, in the dtype of `xs`.
    pub(crate) fn forward(&self, xs: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
        let input = match &self.dropout {
            Some(d) => d.apply(xs)?,
            None => xs.clone(),
        };
        let low = matmul_t(&input.to_dtype(self.a.dtype())?, &self.a)?;
        let term = matmul_t(&low, &self.b)?;
        let factor = self.factor * scale;
        let term = if factor == 1.0 { term } else { (term * factor)? };
        term.to_dtype(xs.dtype())
    }
}

/// An adapter read from a file, applied at a fixed scale.
struct Applied {
    /// Where it came from, for error messages.
    label: String,
    adapter: Adapter,
    scale: f64,
    attached: Mutex<HashSet<String>>,
}

/// Trainable adapters, created as matching modules load.
struct Training {
    config: LoraConfig,
    targets: TargetModules,
    init_rng: Mutex<StdRng>,
    dropout_active: Arc<AtomicBool>,
    dropout_rng: Arc<Mutex<StdRng>>,
    vars: Mutex<BTreeMap<String, LoraVars>>,
    /// The LLM's trainable adapters act on audio turns only.
    audio_turns_only: bool,
}

/// The trainable factors of one module.
#[derive(Debug, Clone)]
pub struct LoraVars {
    pub a: Var,
    pub b: Var,
}

/// Every adapter a model loads with; see the module docs.
#[derive(Default)]
pub struct LoraSet {
    applied: Vec<Applied>,
    training: Option<Training>,
    /// (in, out) of every linear layer that asked for its adapters.
    linear_shapes: Mutex<BTreeMap<String, (usize, usize)>>,
}

/// (in, out) of each linear layer of a loaded model, by module name.
pub type LinearShapes = BTreeMap<String, (usize, usize)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these maps half-updated; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LoraSet {
    /// Applies `adapter` at `scale`; several adapters on one module add up.
    pub fn apply(mut self, adapter: Adapter, scale: f64, label: impl Into<String>) -> Self {
        self.applied.push(Applied { label: label.into(), adapter, scale, attached: Mutex::new(HashSet::new()) });
        self
    }

    /// The shapes of the linear layers loaded so far (all of them, once a model has loaded).
    pub fn linear_shapes(&self) -> LinearShapes {
        lock(&self.linear_shapes).clone()
    }

    /// Creates trainable adapters on every module matching `targets`: A
    /// kaiming-uniform like PEFT (bound 1/√in), B zero, so training starts at
    /// the base model. `seed` fixes both the initialisation and the dropout masks.
    pub fn train(mut self, config: LoraConfig, targets: TargetModules, seed: u64) -> Result<Self> {
        if config.rank == 0 {
            bail!("LoRA rank must be at least 1");
        }
        if !(0.0..1.0).contains(&config.dropout) {
            bail!("LoRA dropout must be in [0, 1), got {}", config.dropout);
        }
        self.training = Some(Training {
            config,
            targets,
            init_rng: Mutex::new(StdRng::seed_from_u64(seed)),
            dropout_active: Arc::new(AtomicBool::new(true)),
            dropout_rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed.wrapping_add(1)))),
            vars: Mutex::new(BTreeMap::new()),
            audio_turns_only: false,
        });
        Ok(self)
    }

    /// Gates the trainable adapters on LLM modules to audio turns, as the
    /// adapter they become will be at inference ([`Adapter::audio_turns_only`]).
    pub fn with_llm_on_audio_turns_only(mut self, gated: bool) -> Self {
        if let Some(training) = &mut self.training {
            training.audio_turns_only = gated;
        }
        self
    }

    /// Turns the training adapters' dropout on (training) or off (evaluation).
    pub fn set_dropout_active(&self, active: bool) {
        if let Some(t) = &self.training {
            t.dropout_active.store(active, Ordering::Relaxed);
        }
    }

    /// The trainable factors by module name (empty until a model has loaded).
    pub fn vars(&self) -> BTreeMap<String, LoraVars> {
        self.training.as_ref().map(|t| lock(&t.vars).clone()).unwrap_or_default()
    }

    /// A copy of the trained adapters as they are now, ready to save.
    pub fn trained(&self) -> Result<Adapter> {
        let training = self.training.as_ref().context("this LoRA set has no trainable adapters")?;
        let modules = lock(&training.vars)
            .iter()
            .map(|(name, v)| {
                Ok((
                    name.clone(),
                    LoraPair { a: v.a.as_tensor().detach().copy()?, b: v.b.as_tensor().detach().copy()? },
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Adapter { config: training.config, modules, audio_turns_only: training.audio_turns_only })
    }

    /// The adapters of `module`, a linear layer (out, in), on `device` in `dtype`.
    pub(crate) fn attach(
        &self,
        module: &str,
        in_dim: usize,
        out_dim: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Vec<LoraLayer>> {
        lock(&self.linear_shapes).insert(module.to_string(), (in_dim, out_dim));
        let mut layers = Vec::new();
        for applied in &self.applied {
            let Some(pair) = applied.adapter.modules.get(module) else { continue };
            let rank = applied.adapter.config.rank;
            for (factor, tensor, expected) in
                [("lora_A", &pair.a, [rank, in_dim]), ("lora_B", &pair.b, [out_dim, rank])]
            {
                if tensor.dims() != expected {
                    bail!(
                        "adapter {}: `{module}.{factor}.weight` has shape {:?}, but this model's `{module}` needs {expected:?}",
                        applied.label,
                        tensor.dims()
                    );
                }
            }
            lock(&applied.attached).insert(module.to_string());
            let layer = LoraLayer::fixed(pair, applied.scale * applied.adapter.config.scaling(), device, dtype)?;
            layers.push(layer.gated(applied.adapter.audio_turns_only && is_llm(module)));
        }
        if let Some(training) = self.training.as_ref().filter(|t| t.targets.matches(module)) {
            let vars = training.vars_for(module, in_dim, out_dim, device, dtype)?;
            let config = training.config;
            layers.push(LoraLayer {
                a: vars.a.as_tensor().clone(),
                b: vars.b.as_tensor().clone(),
                factor: config.scaling(),
                dropout: (config.dropout > 0.0).then(|| Dropout {
                    p: config.dropout,
                    active: training.dropout_active.clone(),
                    rng: training.dropout_rng.clone(),
                }),
                trainable: true,
                low_rank: None,
                audio_turns_only: training.audio_turns_only && is_llm(module),
            });
        }
        Ok(layers)
    }

    /// Fails if an applied adapter names a module no linear layer claimed, or
    /// a training target matched none: both mean the adapter does not fit the model.
    pub fn ensure_all_attached(&self) -> Result<()> {
        for applied in &self.applied {
            let attached = lock(&applied.attached);
            if let Some(missing) = applied.adapter.modules.keys().find(|m| !attached.contains(*m)) {
                bail!("adapter {} adapts `{missing}`, which is not a linear layer of this model", applied.label);
            }
        }
        if let Some(training) = &self.training {
            let vars = lock(&training.vars);
            if let Some((spec, _)) = training.targets.patterns.iter().find(|(_, r)| !vars.keys().any(|m| r.is_match(m)))
            {
                bail!("LoRA target `{spec}` matches no linear layer of this model");
            }
        }
        Ok(())
    }
}

impl Training {
    /// The variables of `module`, created on first use.
    fn vars_for(&self, module: &str, in_dim: usize, out_dim: usize, device: &Device, dtype: DType) -> Result<LoraVars> {
        let mut vars = lock(&self.vars);
        if let Some(existing) = vars.get(module) {
            return Ok(existing.clone());
        }
        let rank = self.config.rank;
        let bound = 1.0 / (in_dim as f32).sqrt();
        let a: Vec<f32> = {
            let mut rng = lock(&self.init_rng);
            (0..rank * in_dim).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let a = Tensor::from_vec(a, (rank, in_dim), device)?.to_dtype(dtype)?;
        let b = Tensor::zeros((out_dim, rank), dtype, device)?;
        let created = LoraVars { a: Var::from_tensor(&a)?, b: Var::from_tensor(&b)? };
        vars.insert(module.to_string(), created.clone());
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_select_the_named_modules_only() {
        let t = TargetModules::new(&["llm-attn", "encoder-attn"]).unwrap();
        assert!(t.matches("llm.layers.12.self_attn.q_proj"));
        assert!(t.matches("encoder.layers.0.self_attn.out_proj"));
        assert!(!t.matches("llm.layers.12.mlp.up_proj"));
        assert!(!t.matches("asr_decoder.layers.0.self_attn.q_proj"));
        // Patterns match whole names, not substrings.
        let t = TargetModules::new(&[r"llm.*\.(q_proj|v_proj)"]).unwrap();
        assert!(t.matches("llm.layers.3.self_attn.v_proj") && !t.matches("llm.layers.3.self_attn.v_proj.x"));
        assert!(TargetModules::new(&["llm.(unclosed"]).is_err());
    }

    /// Outputs of a one-module model whose adapter was created with `seed`:
    /// two with dropout on, then one with it off; and the adapter's A.
    fn seeded_outputs(seed: u64) -> (Vec<Vec<f32>>, Tensor) {
        use crate::model::{linear::Linear, weights::Weights};
        use candle_core::Module;
        let dev = Device::Cpu;
        let config = LoraConfig { rank: 2, alpha: 4.0, dropout: 0.5 };
        let set = Arc::new(LoraSet::default().train(config, TargetModules::new(&["m"]).unwrap(), seed).unwrap());
        let tensors = [("m.weight".to_string(), Tensor::ones((3, 8), DType::F32, &dev).unwrap())].into();
        let linear =
            Linear::load(&Weights::new(tensors, DType::F32, &dev).with_lora(set.clone()).pp("m"), 8, 3, false).unwrap();
        let vars = &set.vars()["m"];
        vars.b.set(&Tensor::ones((3, 2), DType::F32, &dev).unwrap()).unwrap();
        let xs = Tensor::arange(0f32, 8.0, &dev).unwrap().unsqueeze(0).unwrap();
        let mut outputs: Vec<Vec<f32>> =
            (0..2).map(|_| linear.forward(&xs).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect();
        set.set_dropout_active(false);
        outputs.push(linear.forward(&xs).unwrap().flatten_all().unwrap().to_vec1().unwrap());
        (outputs, vars.a.as_tensor().clone())
    }

    #[test]
    fn seed_fixes_initialisation_and_dropout() {
        let (outputs, a) = seeded_outputs(3);
        let (again, a_again) = seeded_outputs(3);
        assert_eq!(outputs, again);
        assert_ne!(outputs[0], outputs[1], "each forward draws a new dropout mask");
        assert_eq!(a.to_vec2::<f32>().unwrap(), a_again.to_vec2::<f32>().unwrap());
        let bound = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(bound > 0.0 && bound <= 1.0 / 8f32.sqrt(), "A is kaiming-uniform within 1/sqrt(in): {bound}");
        assert_ne!(seeded_outputs(4).0, outputs);
    }

    #[test]
    fn scaling_the_llm_modules_leaves_the_others_alone() {
        let dev = Device::Cpu;
        let factor = |v: f32, shape: (usize, usize)| Tensor::full(v, shape, &dev).unwrap();
        let named = ["llm.layers.0.self_attn.q_proj", "llmx.q_proj", "encoder.layers.0.self_attn.q_proj"]
            .into_iter()
            .flat_map(|m| [(format!("{m}.lora_A"), factor(1.0, (2, 4))), (format!("{m}.lora_B"), factor(2.0, (3, 2)))]);
        let adapter = Adapter::from_factors(LoraConfig { rank: 2, alpha: 4.0, dropout: 0.0 }, named)
            .unwrap()
            .with_llm_scaled(0.25)
            .unwrap();
        for (module, pair) in &adapter.modules {
            let b = pair.b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let expected = if module.starts_with("llm.") { 0.5 } else { 2.0 };
            assert!(b.iter().all(|&x| x == expected), "{module}: {b:?}");
            assert!(pair.a.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&x| x == 1.0), "{module}");
        }
    }

    #[test]
    fn bake_adds_the_scaled_product() {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &dev).unwrap();
        let a = Tensor::new(&[[1f32, -1.0]], &dev).unwrap();
        let b = Tensor::new(&[[2f32], [0.0], [1.0]], &dev).unwrap();
        let baked = bake(&w, &a, &b, 0.5).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(baked, [[2.0, 1.0], [3.0, 4.0], [5.5, 5.5]]);
        assert!(bake(&w, &b, &a, 1.0).is_err());
    }
}
