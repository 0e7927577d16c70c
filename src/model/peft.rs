//! Adapter directories in the PEFT layout, so the wider ecosystem can read
//! them: `adapter_config.json` and `adapter_model.safetensors`, whose keys are
//! `base_model.model.<module>.lora_A.weight` (r, in) and `….lora_B.weight`
//! (out, r). Modules carry their Hugging Face names ([`super::hf_names`]), so
//! PEFT applies a kioku adapter to the Hugging Face checkpoint unchanged, and
//! kioku applies an adapter trained with PEFT on the checkpoint it packed.
//! kioku's own adapters also record which base model they were trained on, so
//! applying one to another model fails up front; for an adapter from
//! elsewhere the checkpoint name and the shapes decide.

use super::file::ModelHeader;
use super::hf_names;
use super::lora::{Adapter, LoraConfig, LoraSet};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const TENSORS_FILE: &str = "adapter_model.safetensors";
const KEY_PREFIX: &str = "base_model.model.";

/// `--adapter DIR[:SCALE]`: an adapter directory and the scale `s` to apply it at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterSpec {
    pub path: PathBuf,
    pub scale: f64,
}

impl std::str::FromStr for AdapterSpec {
    type Err = std::convert::Infallible;

    /// Paths may contain ':', so only a suffix that parses as a finite number
    /// is a scale, and never when the whole text names an existing path.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let scaled = text
            .rsplit_once(':')
            .and_then(|(path, scale)| Some((path, scale.parse::<f64>().ok().filter(|s| s.is_finite())?)));
        Ok(match scaled {
            Some((path, scale)) if !Path::new(text).exists() => Self { path: path.into(), scale },
            _ => Self { path: text.into(), scale: 1.0 },
        })
    }
}

/// `adapter_config.json`: PEFT's fields, plus kioku's own.
#[derive(Debug, Serialize, Deserialize)]
struct AdapterConfig {
    peft_type: String,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f32,
    /// A list of module names or one regular expression, as PEFT allows.
    target_modules: serde_json::Value,
    #[serde(default = "no_bias")]
    bias: String,
    task_type: Option<String>,
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    /// PEFT's per-module ranks and alphas, and whole modules trained beside
    /// the adapter: kioku applies none of these, so it refuses adapters that use them.
    #[serde(default)]
    rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    alpha_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    kioku: Option<KiokuFields>,
}

fn no_bias() -> String {
    "none".into()
}

#[derive(Debug, Serialize, Deserialize)]
struct KiokuFields {
    /// [`ModelHeader::identity_of`] the components the adapter changes, in the
    /// model it was trained on (all of them when `base_components` is absent).
    base_model_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_components: Option<Vec<String>>,
    /// Modules Hugging Face has no counterpart of (the projector's), which
    /// keep kioku's names in the tensor file and `target_modules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kioku_named_modules: Vec<String>,
    /// The adapter's LLM modules act on audio turns only
    /// ([`Adapter::audio_turns_only`]); tools other than kioku apply them always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    llm_on_audio_turns_only: bool,
}

/// The model components ("whisper", "llm", "projector") that adapted modules belong to.
fn components_of<'a>(modules: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut components: Vec<String> = modules
        .map(|m| match m.split('.').next().unwrap_or("") {
            "encoder" | "asr_decoder" => "whisper",
            "projector" => "projector",
            _ => "llm",
        })
        .map(String::from)
        .collect();
    components.sort();
    components.dedup();
    components
}

fn identity_for(base: &ModelHeader, components: Option<&[String]>) -> Result<String> {
    match components {
        Some(c) => base.identity_of(&c.iter().map(String::as_str).collect::<Vec<_>>()),
        None => base.base_identity(),
    }
}

/// The name a module has in adapter files: Hugging Face's where it has one.
fn file_name(module: &str) -> String {
    hf_names::to_hf(module).unwrap_or_else(|| module.to_string())
}

/// The module an adapter file's name stands for: Hugging Face names and
/// kioku's own (which adapters written before used) both map to kioku's.
fn module_of(file_name: &str) -> Result<String> {
    let kioku_prefixes = ["llm.", "encoder.", "asr_decoder.", "projector."];
    match hf_names::from_hf(file_name) {
        Some(module) => Ok(module),
        None if kioku_prefixes.iter().any(|p| file_name.starts_with(p)) => Ok(file_name.to_string()),
        None => bail!("`{file_name}` is not a module of Whisper (`model.encoder.…`, `model.decoder.…`) or of the LLM (`model.layers.…`) as Hugging Face names them"),
    }
}

/// The Hugging Face checkpoint an adapter on `components` applies to: the
/// one component's, when it is Whisper's or the LLM's alone and the model
/// file records it.
fn checkpoint_for<'a>(base: &'a ModelHeader, components: &[String]) -> Option<&'a str> {
    match components {
        [only] if only != "projector" => base.checkpoint_of(only),
        _ => None,
    }
}

/// Writes `adapter` into the directory `dir` (created if need be). Each file
/// is replaced atomically, tensors first and config last: a kill in between
/// leaves the new tensors beside the previous config, which still loads when
/// rank and alpha did not change (every save of one training run) and is
/// otherwise refused with a shape error, never applied wrongly. `base_name`
/// names the base when no single Hugging Face checkpoint does.
pub fn save(adapter: &Adapter, dir: &Path, base: &ModelHeader, base_name: &str) -> Result<()> {
    let describe = || format!("cannot save adapter {}", dir.display());
    let mut tensors = Vec::new();
    for (module, pair) in &adapter.modules {
        for (factor, t) in [("lora_A", &pair.a), ("lora_B", &pair.b)] {
            let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?;
            tensors.push((format!("{KEY_PREFIX}{}.{factor}.weight", file_name(module)), t));
        }
    }
    let components = components_of(adapter.modules.keys());
    let config = AdapterConfig {
        peft_type: "LORA".into(),
        r: adapter.config.rank,
        lora_alpha: adapter.config.alpha,
        lora_dropout: adapter.config.dropout,
        // Whole names rather than PEFT's usual suffixes (`q_proj`): a suffix
        // would also catch layers the adapter leaves alone, such as the
        // Whisper decoder's `q_proj` when only the encoder is adapted.
        target_modules: adapter.modules.keys().map(|m| file_name(m)).collect(),
        bias: "none".into(),
        task_type: None,
        base_model_name_or_path: Some(checkpoint_for(base, &components).unwrap_or(base_name).to_string()),
        fan_in_fan_out: false,
        use_rslora: false,
        use_dora: false,
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
        modules_to_save: None,
        kioku: Some(KiokuFields {
            base_model_sha256: identity_for(base, Some(&components))?,
            base_components: Some(components),
            kioku_named_modules: adapter.modules.keys().filter(|m| hf_names::to_hf(m).is_none()).cloned().collect(),
            llm_on_audio_turns_only: adapter.audio_turns_only,
        }),
    };
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    crate::atomic::replace_with(&dir.join(TENSORS_FILE), |tmp| {
        safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata), tmp)?;
        Ok(())
    })
    .with_context(describe)?;
    crate::atomic::write_bytes(&dir.join(CONFIG_FILE), &serde_json::to_vec_pretty(&config)?).with_context(describe)
}

/// Reads the adapter in `dir`, checking that it was made for `base` and that
/// its tensors agree with its config. Whether each module exists in the model
/// with the right shape is checked as the model loads (see [`LoraSet`]).
pub fn load(dir: &Path, base: &ModelHeader) -> Result<Adapter> {
    read(dir, base).with_context(|| format!("cannot load adapter {}", dir.display()))
}

fn read(dir: &Path, base: &ModelHeader) -> Result<Adapter> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{} not found or unreadable", config_path.display()))?;
    let config: AdapterConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid adapter config", config_path.display()))?;
    if config.peft_type != "LORA" {
        bail!("peft_type is `{}`; kioku applies LORA adapters only", config.peft_type);
    }
    if config.bias != "none" || config.use_rslora || config.use_dora || config.fan_in_fan_out {
        bail!("only plain LoRA is supported (bias \"none\", no rsLoRA, DoRA or fan_in_fan_out)");
    }
    if !config.rank_pattern.is_empty() || !config.alpha_pattern.is_empty() {
        bail!("per-module ranks or alphas (rank_pattern, alpha_pattern) are not supported");
    }
    if config.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
        bail!("it saves whole modules beside the adapter (modules_to_save), which kioku does not apply");
    }
    let tensors_path = dir.join(TENSORS_FILE);
    let tensors = candle_core::safetensors::load(&tensors_path, &Device::Cpu)
        .with_context(|| format!("{} not found, unreadable or not safetensors", tensors_path.display()))?;
    let named = tensors
        .into_iter()
        .map(|(key, t)| {
            let factor = key.strip_prefix(KEY_PREFIX).and_then(|k| k.strip_suffix(".weight"));
            let Some((module, factor)) = factor.and_then(|f| f.rsplit_once('.')) else {
                bail!("unexpected tensor `{key}` (expected `{KEY_PREFIX}<module>.lora_A.weight` or `.lora_B.weight`)")
            };
            Ok((format!("{}.{factor}", module_of(module)?), t))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut adapter = Adapter::from_factors(
        LoraConfig { rank: config.r, alpha: config.lora_alpha, dropout: config.lora_dropout },
        named,
    )
    .with_context(|| format!("in {TENSORS_FILE}"))?;
    match &config.kioku {
        Some(kioku) => {
            check_identity(kioku, &config, base)?;
            adapter.audio_turns_only = kioku.llm_on_audio_turns_only;
        }
        None => {
            check_checkpoint(config.base_model_name_or_path.as_deref(), &components_of(adapter.modules.keys()), base)?
        }
    }
    Ok(adapter)
}

/// A kioku adapter fits only the components it was trained on.
fn check_identity(kioku: &KiokuFields, config: &AdapterConfig, base: &ModelHeader) -> Result<()> {
    let identity = identity_for(base, kioku.base_components.as_deref())?;
    if kioku.base_model_sha256 != identity {
        bail!(
            "it was trained on a different base model ({}, identity {}…) than this one (identity {}…)",
            config.base_model_name_or_path.as_deref().unwrap_or("unnamed"),
            &kioku.base_model_sha256[..kioku.base_model_sha256.len().min(12)],
            &identity[..12]
        );
    }
    Ok(())
}

/// An adapter from elsewhere (PEFT) names its base checkpoint. A Hugging Face
/// id (`owner/name`) must be the checkpoint this model's component was packed
/// from; a local path proves nothing, so there the shapes alone decide, as
/// the model loads.
fn check_checkpoint(named: Option<&str>, components: &[String], base: &ModelHeader) -> Result<()> {
    let Some(named) = named.filter(|n| is_hub_id(n) && !Path::new(n).exists()) else { return Ok(()) };
    let Some(ours) = checkpoint_for(base, components) else { return Ok(()) };
    if !named.eq_ignore_ascii_case(ours) {
        bail!("it was trained on {named}, but this model's {} is {ours}", components.join(" and "));
    }
    Ok(())
}

/// `owner/name`, as Hugging Face names checkpoints.
fn is_hub_id(name: &str) -> bool {
    let valid = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    matches!(name.split_once('/'), Some((owner, repo)) if valid(owner) && valid(repo) && !owner.starts_with('.'))
}

/// The set applying every adapter in `specs` to a model with header `base`.
pub fn load_all(specs: &[AdapterSpec], base: &ModelHeader) -> Result<LoraSet> {
    specs.iter().try_fold(LoraSet::default(), |set, spec| {
        Ok(set.apply(load(&spec.path, base)?, spec.scale, spec.path.display().to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::AdapterSpec;

    fn spec(text: &str) -> AdapterSpec {
        text.parse().unwrap()
    }

    #[test]
    fn scale_is_the_numeric_suffix_after_the_last_colon() {
        assert_eq!(spec("adapters/alice"), AdapterSpec { path: "adapters/alice".into(), scale: 1.0 });
        assert_eq!(spec("adapters/alice:0.5"), AdapterSpec { path: "adapters/alice".into(), scale: 0.5 });
        assert_eq!(spec("a:b/alice:-1e-1"), AdapterSpec { path: "a:b/alice".into(), scale: -0.1 });
        assert_eq!(spec("a:b/alice"), AdapterSpec { path: "a:b/alice".into(), scale: 1.0 });
        assert_eq!(spec("alice:nan"), AdapterSpec { path: "alice:nan".into(), scale: 1.0 });
    }

    #[test]
    fn an_existing_path_with_a_numeric_suffix_is_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("v:2");
        std::fs::create_dir(&odd).unwrap();
        let text = odd.to_str().unwrap();
        assert_eq!(spec(text), AdapterSpec { path: odd.clone(), scale: 1.0 });
        assert_eq!(spec(&format!("{text}:0.25")), AdapterSpec { path: odd, scale: 0.25 });
    }
}
