//! `kioku merge`: new model files made from a base model and fine-tunes of it.
//! Every input contributes a task vector per tensor, `τ = θ_input − θ_base`
//! (for a LoRA adapter `τ = (α/r)·B·A`), weighted by `w` and combined by a
//! [`Method`]; the result is `θ_base + combined`. Baking adapters at a
//! discount is the linear method with the discounts as weights:
//! `W + s·(α/r)·B·A`.
//!
//! Changed tensors are stored as the base stores them (dense in its dtype, or
//! re-quantized to the same block type); the others are copied byte for byte.
//! The output records its base's identity, the inputs and the method, and
//! gets an identity of its own: adapters trained on the base are refused on it.

pub mod combine;

pub use combine::Method;

use crate::model::components::{ASR_DECODER, ENCODER};
use crate::model::file::{self, Encoded, MappedModel};
use crate::model::lora::{bake, Adapter};
use crate::model::peft;
use crate::model::whisper::SILENCE_KV;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A LoRA adapter directory trained on the base.
    Adapter,
    /// A whole model file with the base's architecture.
    Model,
}

/// One fine-tune to merge and its weight (for an adapter merged linearly, the
/// scale `s` it is baked at).
#[derive(Debug, Clone)]
pub struct Input {
    pub kind: InputKind,
    pub path: PathBuf,
    pub weight: f64,
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// Tensors written with a new value.
    pub changed: usize,
    /// Tensors copied from the base as stored.
    pub copied: usize,
    /// The record stored in the output's metadata (`kioku.merge`).
    pub record: serde_json::Value,
}

enum Opened {
    Adapter(Adapter),
    /// Boxed: the mapping and its header are several times the size of an adapter.
    Model(Box<MappedModel>),
}

/// Merges `inputs` into the model at `base` with `method` and writes the
/// result to `output` atomically.
pub fn merge(base: &Path, inputs: &[Input], method: Method, output: &Path) -> Result<MergeSummary> {
    method.validate()?;
    if inputs.is_empty() {
        bail!("nothing to merge: give at least one adapter or model");
    }
    let base_model = MappedModel::open(base)?;
    let opened = inputs.iter().map(|input| open(input, &base_model)).collect::<Result<Vec<_>>>()?;
    let mut header = base_model.header.clone();
    let record = json!({
        "base": {"path": base, "identity": base_model.header.base_identity()?, "merge": base_model.header.merge},
        "method": method,
        "inputs": inputs.iter().zip(&opened).map(|(input, o)| describe(input, o)).collect::<Result<Vec<_>>>()?,
    });
    header.merge = Some(record.clone());
    let (mut changed, mut copied) = (0, 0);
    let mut tensors = Vec::new();
    let (mut whisper_changed, mut derived) = (false, Vec::new());
    for name in base_model.names() {
        if derived_from_whisper(&name) {
            derived.push(name);
            continue;
        }
        let merged = merge_tensor(&name, &base_model, inputs, &opened, &method)
            .with_context(|| format!("cannot merge tensor `{name}`"))?;
        let encoded = match merged {
            Some(t) => {
                changed += 1;
                whisper_changed |=
                    name.starts_with(&format!("{ENCODER}.")) || name.starts_with(&format!("{ASR_DECODER}."));
                t
            }
            None => {
                copied += 1;
                base_model.encoded(&name)?
            }
        };
        tensors.push((name, encoded));
    }
    // The stored silence keys and values are Whisper's own projections of its encoding of
    // silence, not weights: they are kept while Whisper is unchanged, and otherwise left out,
    // so the merged model projects them on its first transcription, as files without them do.
    if !whisper_changed {
        for name in derived {
            copied += 1;
            tensors.push((name.clone(), base_model.encoded(&name)?));
        }
    }
    file::write_encoded(output, &header, tensors)?;
    Ok(MergeSummary { changed, copied, record })
}

fn open(input: &Input, base: &MappedModel) -> Result<Opened> {
    if !input.weight.is_finite() {
        bail!("the weight of {} is not a finite number", input.path.display());
    }
    if !input.path.exists() {
        bail!("{} not found{}", input.path.display(), weight_hint(&input.path));
    }
    Ok(match input.kind {
        InputKind::Adapter => {
            let adapter = peft::load(&input.path, &base.header)?;
            if adapter.audio_turns_only && adapter.modules.keys().any(|m| crate::model::lora::is_llm(m)) {
                bail!(
                    "adapter {} changes the LLM on spoken questions only; baked into the weights it would change every answer, so apply it with --adapter instead",
                    input.path.display()
                );
            }
            for (module, pair) in &adapter.modules {
                let name = format!("{module}.weight");
                if base.dense_shape(&name).ok() != Some(vec![pair.b.dim(0)?, pair.a.dim(1)?]) {
                    bail!(
                        "adapter {} adapts `{module}`, which is not a linear layer of this model with that shape",
                        input.path.display()
                    );
                }
            }
            Opened::Adapter(adapter)
        }
        InputKind::Model => {
            let model = MappedModel::open(&input.path)?;
            same_architecture(base, &model).with_context(|| {
                format!("model {} is not a fine-tune of the base model's architecture", input.path.display())
            })?;
            Opened::Model(Box::new(model))
        }
    })
}

/// `A:B` where `A:B` does not exist reads as a path when `B` is not a number;
/// say so, since a mistyped weight is the likely cause.
fn weight_hint(path: &Path) -> String {
    match path.to_string_lossy().rsplit_once(':') {
        Some((_, suffix)) => {
            format!(" (`{suffix}` after the last ':' is not a number, so it was read as part of the path)")
        }
        None => String::new(),
    }
}

/// Whether `name` is not a weight but derived from Whisper's: the stored silence keys and values.
fn derived_from_whisper(name: &str) -> bool {
    name.starts_with(&format!("{ASR_DECODER}.{SILENCE_KV}."))
}

fn same_architecture(base: &MappedModel, other: &MappedModel) -> Result<()> {
    let (a, b) = (&base.header, &other.header);
    let configs = [
        ("Whisper", serde_json::to_value(&a.whisper)?, serde_json::to_value(&b.whisper)?),
        ("LLM", serde_json::to_value(&a.llm)?, serde_json::to_value(&b.llm)?),
        ("projector", serde_json::to_value(&a.projector)?, serde_json::to_value(&b.projector)?),
    ];
    if let Some((component, _, _)) = configs.iter().find(|(_, x, y)| x != y) {
        bail!("its {component} configuration differs");
    }
    // A merge leaves out what is derived from Whisper's weights when Whisper changes.
    let weights_of =
        |model: &MappedModel| model.names().into_iter().filter(|name| !derived_from_whisper(name)).collect::<Vec<_>>();
    let names = weights_of(base);
    if names != weights_of(other) {
        bail!("its tensors are not the base model's tensors");
    }
    for name in &names {
        if base.dense_shape(name)? != other.dense_shape(name)? {
            bail!(
                "tensor `{name}` has shape {:?}, the base's has {:?}",
                other.dense_shape(name)?,
                base.dense_shape(name)?
            );
        }
    }
    Ok(())
}

/// The record of one input in the output's metadata.
fn describe(input: &Input, opened: &Opened) -> Result<serde_json::Value> {
    Ok(match opened {
        Opened::Adapter(_) => {
            let config_path = input.path.join(peft::CONFIG_FILE);
            let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)
                .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
            json!({"kind": "adapter", "path": input.path, "weight": input.weight, "adapter_config": config})
        }
        Opened::Model(model) => {
            json!({"kind": "model", "path": input.path, "weight": input.weight, "identity": model.header.base_identity()?})
        }
    })
}

/// The tensor `name` after merging, stored as the base stores it, or None
/// when the inputs leave it as it is.
fn merge_tensor(
    name: &str,
    base: &MappedModel,
    inputs: &[Input],
    opened: &[Opened],
    method: &Method,
) -> Result<Option<Encoded>> {
    let mut taus = Vec::new();
    let mut weights = Vec::new();
    let mut base_f32 = None;
    for (input, o) in inputs.iter().zip(opened) {
        let tau = match o {
            Opened::Adapter(adapter) => {
                let Some(pair) = name.strip_suffix(".weight").and_then(|m| adapter.modules.get(m)) else { continue };
                let zeros = Tensor::zeros((pair.b.dim(0)?, pair.a.dim(1)?), DType::F32, &Device::Cpu)?;
                bake(&zeros, &pair.a, &pair.b, adapter.config.scaling())?
            }
            Opened::Model(model) => {
                if model.stored_equal(base, name)? {
                    continue;
                }
                let theta_base = match &base_f32 {
                    Some(t) => t,
                    None => base_f32.insert(base.dense_f32(name)?),
                };
                (model.dense_f32(name)? - theta_base)?
            }
        };
        taus.push(tau.flatten_all()?.to_vec1::<f32>()?);
        weights.push(input.weight);
    }
    if taus.is_empty() {
        return Ok(None);
    }
    let slices: Vec<&[f32]> = taus.iter().map(Vec::as_slice).collect();
    let delta = combine::combine(&slices, &weights, method, name);
    if delta.iter().all(|v| *v == 0.0) {
        return Ok(None);
    }
    let theta_base = match base_f32 {
        Some(t) => t,
        None => base.dense_f32(name)?,
    };
    let merged = (&theta_base + Tensor::from_vec(delta, theta_base.shape(), &Device::Cpu)?)?;
    Ok(Some(base.encode_like(name, &merged)?))
}
