//! Projector training. The encoder and the LLM's weights stay frozen; the
//! projector learns, and with `speech_lora_rank` > 0 so does a LoRA speech
//! adapter on every LLM projection. The adapter acts on audio turns only (the
//! assistant switches it on for them), so typed questions keep the base LLM:
//! text answers cannot be forgotten, and a 135M LLM gets the capacity to read
//! audio embeddings that its frozen weights lack.
//!
//! Each example puts a clip's projected audio where the user's words go in the
//! chat prompt and teaches, with teacher-forced cross-entropy, one of:
//! - the model's own text-mode answer to the clip's words (sequence-level
//!   distillation: spoken and typed questions should get the same answer), or
//! - the words themselves after "Repeat exactly what I said." (a transcript
//!   target that forces the audio embeddings to carry every word).
//!
//! The data order and task choice derive from (seed, step), so a run resumed
//! from a checkpoint continues exactly as an uninterrupted one would.

use super::features::AlignItem;
use crate::assistant::{Assistant, REPEAT_INSTRUCTION};
use crate::model::components::{LLM, PROJECTOR, SPEECH_LORA};
use crate::model::file::{MappedModel, ModelHeader, SPEECH_LORA_KEY};
use crate::model::llama::{FrozenPrefix, Llama};
use crate::model::lora::{LoraConfig, LoraSet, TargetModules, SPEECH_LORA_TARGETS};
use crate::model::ops::Path as OpsPath;
use crate::model::projector::{Projector, ProjectorConfig};
use crate::model::weights::Weights;
use crate::training::{AdamW, AdamWConfig, Checkpoint, LrSchedule};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub seed: u64,
    /// Width of the projector's first linear layer (SwiGLU halves it).
    pub hidden_dim: usize,
    /// Share of examples that train "repeat what I said" instead of answering.
    pub repeat_fraction: f64,
    /// Longest target, in tokens (longer answers and transcripts are cut).
    pub max_target_tokens: usize,
    /// Start from this trained projector instead of a random one (a further stage).
    pub init: Option<std::path::PathBuf>,
    /// Rank of the speech adapter: LoRA on every LLM projection, trained with
    /// the projector and active only on audio turns (0: the LLM stays frozen).
    #[serde(default)]
    pub speech_lora_rank: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1200,
            batch_size: 8,
            peak_lr: 1e-3,
            warmup_steps: 60,
            seed: 0,
            hidden_dim: 1024,
            repeat_fraction: 0.4,
            max_target_tokens: 20,
            init: None,
            speech_lora_rank: 0,
        }
    }
}

/// What a training example asks of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Answer,
    Repeat,
}

/// The frozen LLM, the trainable projector and the prompt pieces around the audio.
pub struct ProjectorTrainer {
    llm: Llama,
    projector: Projector,
    optimizer: AdamW,
    schedule: LrSchedule,
    config: TrainConfig,
    projector_config: ProjectorConfig,
    /// The prompt before the audio, shared by every example: its keys and
    /// values are computed once instead of at every step.
    prefix: FrozenPrefix,
    answer_suffix: Vec<u32>,
    repeat_suffix: Vec<u32>,
    end_of_turn: u32,
    tokenizer: crate::model::bpe::TextTokenizer,
    device: Device,
}

impl ProjectorTrainer {
    /// Loads the LLM of `model_path` with dense f32 weights (the training path)
    /// and a freshly initialised projector.
    pub fn new(model_path: &Path, assistant: &Assistant, config: TrainConfig, device: &Device) -> Result<Self> {
        let mapped = MappedModel::open(model_path)?;
        let header = mapped.header.clone();
        let mut weights = mapped.weights(device, DType::F32)?.with_dense_only(true);
        let speech_lora = (config.speech_lora_rank > 0)
            .then(|| -> Result<_> {
                let lora = LoraSet::default().train(
                    speech_lora_config(config.speech_lora_rank),
                    TargetModules::new(&[SPEECH_LORA_TARGETS])?,
                    config.seed,
                )?;
                Ok(Arc::new(lora))
            })
            .transpose()?;
        if let Some(lora) = &speech_lora {
            weights = weights.with_lora(lora.clone());
        }
        drop(mapped);
        let llm = Llama::load(&weights.pp(LLM), &header.llm)?;
        let (prefix_ids, answer_suffix) = assistant.audio_turn_ids(None)?;
        let (repeat_prefix, repeat_suffix) = assistant.audio_turn_ids(Some(REPEAT_INSTRUCTION))?;
        ensure!(prefix_ids == repeat_prefix, "the prompt before the audio depends on the instruction");
        // Computed while the speech adapter is still zero: the adapter acts on
        // the audio turn only, and the prompt before it stays the text mode's.
        let mut prefix_cache = llm.new_cache();
        llm.forward_embeds(
            &llm.embed(&Tensor::new(prefix_ids.as_slice(), device)?.unsqueeze(0)?)?,
            Some(&mut prefix_cache),
            OpsPath::Fast,
        )?;
        let prefix = prefix_cache.to_frozen_prefix()?;
        let projector_config = projector_config_for(&header, &config);
        let mut vars = initial_projector(&projector_config, &llm, config.seed, device)?;
        if let Some(lora) = &speech_lora {
            lora.ensure_all_attached()?;
            for (module, v) in lora.vars() {
                vars.insert(format!("{SPEECH_LORA}.{module}.lora_A"), v.a);
                vars.insert(format!("{SPEECH_LORA}.{module}.lora_B"), v.b);
            }
        }
        if let Some(path) = &config.init {
            let trained = crate::import::read_projector(path)?;
            ensure!(
                trained.config == projector_config,
                "projector {} is {:?}, but this run trains {projector_config:?} (check --hidden-dim)",
                path.display(),
                trained.config
            );
            // A trained speech adapter carries on when this run trains one of its rank;
            // without one in the file, the adapter starts from zero.
            let carries_adapter = match trained.speech_lora {
                Some(trained_lora) => {
                    let wanted = config.speech_lora_rank;
                    ensure!(
                        trained_lora.rank == wanted,
                        "projector {} has a speech adapter of rank {}, but this run trains rank {wanted} (check --speech-lora-rank)",
                        path.display(),
                        trained_lora.rank
                    );
                    true
                }
                None => false,
            };
            let loaded = vars.iter().filter(|(name, _)| name.starts_with(&format!("{PROJECTOR}.")) || carries_adapter);
            for (name, var) in loaded {
                var.set(
                    &trained
                        .tensors
                        .get(name)
                        .with_context(|| format!("projector {} has no {name}", path.display()))?
                        .to_device(device)?,
                )?;
            }
        }
        let projector = projector_from_vars(&vars, &projector_config, device)?;
        let end_of_turn = *header.llm.eos_token_ids.first().context("the LLM has no end-of-turn token")?;
        let schedule = LrSchedule {
            peak: config.peak_lr,
            warmup_steps: config.warmup_steps,
            total_steps: config.steps,
            final_fraction: 0.1,
        };
        Ok(Self {
            llm,
            projector,
            optimizer: AdamW::new(vars, AdamWConfig::default())?,
            schedule,
            projector_config,
            prefix,
            answer_suffix,
            repeat_suffix,
            end_of_turn,
            tokenizer: assistant.llm_tokenizer().clone(),
            device: device.clone(),
            config,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn projector_config(&self) -> &ProjectorConfig {
        &self.projector_config
    }

    pub fn trainable(&self) -> &BTreeMap<String, Var> {
        self.optimizer.vars()
    }

    pub fn steps_taken(&self) -> usize {
        self.optimizer.steps_taken()
    }

    /// The examples of step `step`: indices into the training items, and tasks.
    pub fn batch_plan(&self, step: usize, items: usize) -> Vec<(usize, Task)> {
        (0..self.config.batch_size)
            .map(|j| {
                let global = step * self.config.batch_size + j;
                let (epoch, position) = (global / items, global % items);
                let mut order: Vec<usize> = (0..items).collect();
                order.shuffle(&mut StdRng::seed_from_u64(
                    self.config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
                let mut coin = StdRng::seed_from_u64(
                    self.config.seed.wrapping_add(global as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
                );
                let task = if coin.random::<f64>() < self.config.repeat_fraction { Task::Repeat } else { Task::Answer };
                (order[position], task)
            })
            .collect()
    }

    /// Target token ids of an example, ending with the end-of-turn token when complete.
    fn target(&self, item: &AlignItem, task: Task) -> Result<Vec<u32>> {
        let (text, finished) = match task {
            Task::Repeat => (item.entry.text.as_str(), true),
            Task::Answer => (item.text_answer.answer.as_str(), item.text_answer.finished),
        };
        let mut ids = crate::assistant::token_ids(&self.tokenizer, text)?;
        if finished {
            ids.push(self.end_of_turn);
        }
        ids.truncate(self.config.max_target_tokens);
        ensure!(!ids.is_empty(), "example {} has an empty target", item.entry.id);
        Ok(ids)
    }

    /// Mean cross-entropy over the target tokens of a batch (training path).
    pub fn loss(&self, batch: &[(&AlignItem, Task)]) -> Result<Tensor> {
        let mut sequences = Vec::with_capacity(batch.len());
        let mut targets = Vec::new();
        let mut rows = Vec::new();
        for (item, task) in batch {
            let audio =
                self.projector.forward(&item.features.to_device(&self.device)?.unsqueeze(0)?, OpsPath::Trainable)?;
            let suffix = match task {
                Task::Answer => &self.answer_suffix,
                Task::Repeat => &self.repeat_suffix,
            };
            let target = self.target(item, *task)?;
            // The target is fed shifted by one: the last prompt position predicts its first token.
            let text: Vec<u32> = suffix.iter().chain(&target[..target.len() - 1]).copied().collect();
            let text = self.llm.embed(&Tensor::new(text.as_slice(), &self.device)?.unsqueeze(0)?)?;
            let sequence = Tensor::cat(&[&audio, &text], 1)?;
            let first = audio.dim(1)? + suffix.len() - 1;
            rows.push((first, target.len()));
            targets.extend(target);
            sequences.push(sequence);
        }
        // Right padding needs no mask: causal attention never looks ahead.
        let longest =
            sequences.iter().map(|s| s.dim(1)).collect::<candle_core::Result<Vec<_>>>()?.into_iter().max().unwrap_or(0);
        let padded = sequences
            .iter()
            .map(|s| s.pad_with_zeros(1, 0, longest - s.dim(1)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let hidden = self.llm.forward_after_prefix(&Tensor::cat(&padded, 0)?, &self.prefix, OpsPath::Trainable)?;
        let positions: Vec<u32> = rows
            .iter()
            .enumerate()
            .flat_map(|(b, &(first, n))| (first..first + n).map(move |p| (b * longest + p) as u32))
            .collect();
        let width = hidden.dim(D::Minus1)?;
        let selected =
            hidden.reshape(((), width))?.index_select(&Tensor::new(positions.as_slice(), &self.device)?, 0)?;
        let logits = self.llm.logits(&selected.unsqueeze(0)?)?.squeeze(0)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &Tensor::new(targets.as_slice(), &self.device)?)?)
    }

    /// One optimizer step on the batch of step `steps_taken()`; returns the loss.
    pub fn step(&mut self, items: &[AlignItem]) -> Result<f32> {
        let step = self.optimizer.steps_taken();
        let plan = self.batch_plan(step, items.len());
        let batch: Vec<(&AlignItem, Task)> = plan.iter().map(|&(i, task)| (&items[i], task)).collect();
        let loss = self.loss(&batch)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            bail!("the training loss became {value} at step {step}; lower --lr");
        }
        let report = self.optimizer.step(&loss.backward()?, self.schedule.at(step))?;
        ensure!(report.without_gradient == 0, "{} projector tensors got no gradient", report.without_gradient);
        Ok(value)
    }

    pub fn learning_rate(&self) -> f64 {
        self.schedule.at(self.optimizer.steps_taken())
    }

    /// Mean loss over fixed examples without training (both tasks for each item).
    pub fn evaluate(&self, items: &[AlignItem]) -> Result<f32> {
        let mut total = 0.0;
        for task in [Task::Answer, Task::Repeat] {
            let batch: Vec<(&AlignItem, Task)> = items.iter().map(|i| (i, task)).collect();
            total += self.loss(&batch)?.to_scalar::<f32>()?;
        }
        Ok(total / 2.0)
    }

    /// The full training state (projector, optimizer moments, step, config).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut checkpoint = Checkpoint { tensors: self.optimizer.state_tensors()?, ..Default::default() };
        checkpoint.set("steps_taken", &self.optimizer.steps_taken())?;
        checkpoint.set("config", &self.config)?;
        Ok(checkpoint)
    }

    /// Continues from `checkpoint`; its configuration must match this run's.
    pub fn resume(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let config: TrainConfig = checkpoint.get("config")?;
        ensure!(
            config == self.config,
            "the checkpoint was made with other settings ({config:?}); delete it or use the same options"
        );
        self.optimizer.restore(&checkpoint.tensors, checkpoint.get("steps_taken")?)
    }

    /// The trained projector as f16 tensors with its configuration, ready for `kioku pack --projector`.
    pub fn save_projector(&self, path: &Path, training_record: &serde_json::Value) -> Result<()> {
        let mut out = Checkpoint::default();
        for (name, var) in self.optimizer.vars() {
            out.tensors.insert(name.clone(), var.as_tensor().to_dtype(DType::F16)?);
        }
        out.set("projector.config", &self.projector_config)?;
        if self.config.speech_lora_rank > 0 {
            out.set(SPEECH_LORA_KEY, &speech_lora_config(self.config.speech_lora_rank))?;
        }
        out.set("projector.training", training_record)?;
        out.save(path)
    }
}

/// Norms start at one; linear layers are scaled so that the projector's output
/// has the spread of the LLM's own token embeddings from the first step.
fn initial_projector(cfg: &ProjectorConfig, llm: &Llama, seed: u64, device: &Device) -> Result<BTreeMap<String, Var>> {
    let stacked = cfg.input_dim * cfg.stack_factor;
    let half = cfg.hidden_dim / 2;
    let sample_ids: Vec<u32> = (0..4096).map(|i| i * 11 % llm.config().vocab_size as u32).collect();
    let embedding_std = llm
        .embed(&Tensor::new(sample_ids.as_slice(), device)?.unsqueeze(0)?)?
        .flatten_all()?
        .sqr()?
        .mean_all()?
        .sqrt()?
        .to_scalar::<f32>()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = |rows: usize, cols: usize, std: f32| -> Result<Tensor> {
        // Box-Muller from the seeded generator: identical initialisation on every device.
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| {
                let (u, v) = (rng.random::<f32>().max(f32::MIN_POSITIVE), rng.random::<f32>());
                std * (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
            })
            .collect();
        Ok(Tensor::from_vec(values, (rows, cols), device)?)
    };
    let tensors = [
        ("ln_pre.weight", Tensor::ones(stacked, DType::F32, device)?),
        ("linear_1.weight", normal(cfg.hidden_dim, stacked, 1.0 / (stacked as f32).sqrt())?),
        ("ln_mid.weight", Tensor::ones(half, DType::F32, device)?),
        ("linear_2.weight", normal(cfg.output_dim, half, embedding_std / (half as f32).sqrt())?),
    ];
    tensors.into_iter().map(|(name, t)| Ok((format!("{PROJECTOR}.{name}"), Var::from_tensor(&t)?))).collect()
}

fn projector_config_for(header: &ModelHeader, config: &TrainConfig) -> ProjectorConfig {
    ProjectorConfig {
        stack_factor: 8,
        input_dim: header.whisper.d_model,
        hidden_dim: config.hidden_dim,
        output_dim: header.llm.hidden_size,
    }
}

/// The speech adapter's shape: α = 2r, no dropout (the corpus is large next to it).
fn speech_lora_config(rank: usize) -> LoraConfig {
    LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0 }
}

fn projector_from_vars(vars: &BTreeMap<String, Var>, cfg: &ProjectorConfig, device: &Device) -> Result<Projector> {
    let projector_vars = vars.iter().filter(|(k, _)| k.starts_with(&format!("{PROJECTOR}.")));
    let weights =
        Weights::new(projector_vars.map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect(), DType::F32, device)
            .with_dense_only(true);
    Projector::load(&weights.pp(PROJECTOR), cfg)
}
