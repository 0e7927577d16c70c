//! The merged model file: one safetensors file holding every component under a
//! prefix (`encoder.`, `asr_decoder.`, `projector.`, `llm.`) and, in its
//! metadata, everything else needed to run it (configs, tokenizers, chat
//! template, provenance). Any safetensors tool can read it.

use super::llama::LlamaConfig;
use super::projector::ProjectorConfig;
use super::weights::Weights;
use super::whisper::WhisperConfig;
use anyhow::{bail, Context, Result};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &str = "kioku.format_version";

/// Tensor name prefixes of the four components.
pub const ENCODER: &str = "encoder";
pub const ASR_DECODER: &str = "asr_decoder";
pub const PROJECTOR: &str = "projector";
pub const LLM: &str = "llm";

/// Where a component's weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub component: String,
    /// Registry package (or a local path for user-supplied checkpoints).
    pub source: String,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub file: Option<String>,
    pub license: Option<String>,
}

/// Everything in the file except the tensors.
#[derive(Debug, Clone)]
pub struct ModelHeader {
    pub whisper: WhisperConfig,
    pub whisper_tokenizer: String,
    pub llm: LlamaConfig,
    pub llm_tokenizer: String,
    pub chat_template: String,
    pub projector: Option<ProjectorConfig>,
    pub provenance: Vec<Provenance>,
}

impl ModelHeader {
    fn to_metadata(&self) -> Result<HashMap<String, String>> {
        let mut m = HashMap::from([
            (FORMAT_KEY.to_string(), FORMAT_VERSION.to_string()),
            ("whisper.config".into(), serde_json::to_string(&self.whisper)?),
            ("whisper.tokenizer".into(), self.whisper_tokenizer.clone()),
            ("llm.config".into(), serde_json::to_string(&self.llm)?),
            ("llm.tokenizer".into(), self.llm_tokenizer.clone()),
            ("llm.chat_template".into(), self.chat_template.clone()),
            ("provenance".into(), serde_json::to_string(&self.provenance)?),
        ]);
        if let Some(p) = &self.projector {
            m.insert("projector.config".into(), serde_json::to_string(p)?);
        }
        Ok(m)
    }

    fn from_metadata(m: &HashMap<String, String>) -> Result<Self> {
        let get = |key: &str| m.get(key).with_context(|| format!("metadata entry `{key}` is missing"));
        fn json<T: DeserializeOwned>(key: &str, text: &str) -> Result<T> {
            serde_json::from_str(text).with_context(|| format!("metadata entry `{key}` is not valid"))
        }
        Ok(Self {
            whisper: json("whisper.config", get("whisper.config")?)?,
            whisper_tokenizer: get("whisper.tokenizer")?.clone(),
            llm: json("llm.config", get("llm.config")?)?,
            llm_tokenizer: get("llm.tokenizer")?.clone(),
            chat_template: get("llm.chat_template")?.clone(),
            projector: m.get("projector.config").map(|t| json("projector.config", t)).transpose()?,
            provenance: json("provenance", get("provenance")?)?,
        })
    }
}

/// Writes a model file atomically. Tensors are stored in `dtype` (f16 halves the file).
pub fn write(path: &Path, header: &ModelHeader, tensors: &BTreeMap<String, Tensor>, dtype: DType) -> Result<()> {
    let converted: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.to_dtype(dtype)?.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let metadata = header.to_metadata()?;
    crate::atomic::replace_with(path, |tmp| {
        safetensors::serialize_to_file(converted.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata), tmp)?;
        Ok(())
    })
}

/// A model file opened by memory map; nothing is copied until [`MappedModel::weights`].
pub struct MappedModel {
    mmap: memmap2::Mmap,
    pub header: ModelHeader,
}

/// Shape and dtype of one stored tensor, read from the header alone.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

impl MappedModel {
    pub fn open(path: &Path) -> Result<Self> {
        let describe = || format!("cannot load model {}", path.display());
        let file = std::fs::File::open(path)
            .with_context(|| format!("model file {} not found or unreadable (run `make model` to build the default one)", path.display()))?;
        // SAFETY: the file is only read; kioku replaces model files by rename,
        // never by writing in place, so the mapped bytes do not change under us.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.with_context(describe)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| anyhow::anyhow!("not a safetensors file, or truncated or corrupt ({e})"))
            .with_context(describe)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let version = metadata
            .get(FORMAT_KEY)
            .with_context(|| format!("{} is a safetensors file but not a kioku model (no `{FORMAT_KEY}`)", path.display()))?;
        if version != &FORMAT_VERSION.to_string() {
            bail!("{} has model format version {version}, this kioku reads version {FORMAT_VERSION}; re-pack it with `kioku pack`", path.display());
        }
        let header = ModelHeader::from_metadata(&metadata).with_context(describe)?;
        // Header offsets are validated against the real file length here, so a
        // truncated file is reported now rather than when a tensor is read.
        safetensors::SafeTensors::deserialize(&mmap)
            .map_err(|e| anyhow::anyhow!("the file is truncated or corrupt ({e})"))
            .with_context(describe)?;
        Ok(Self { mmap, header })
    }

    pub fn tensor_infos(&self) -> Result<Vec<TensorInfo>> {
        let st = safetensors::SafeTensors::deserialize(&self.mmap)?;
        let mut infos: Vec<TensorInfo> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| TensorInfo { name, dtype: format!("{:?}", view.dtype()), shape: view.shape().to_vec() })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    /// Copies every tensor onto `device` in `dtype`; drop `self` afterwards to
    /// release the mapping.
    pub fn weights(&self, device: &Device, dtype: DType) -> Result<Weights> {
        let st = safetensors::SafeTensors::deserialize(&self.mmap)?;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let t = view.load(device).with_context(|| format!("cannot read tensor `{name}`"))?.to_dtype(dtype)?;
                Ok((name, t))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Weights::new(tensors, dtype, device))
    }
}
