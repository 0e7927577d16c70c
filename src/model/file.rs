//! The merged model file: one safetensors file holding every component under a
//! prefix (`encoder.`, `asr_decoder.`, `projector.`, `llm.`), the tokenizers'
//! JSON as byte tensors (`tokenizer.`), and in its metadata everything else
//! needed to run it (configs, chat template, provenance). Any safetensors tool
//! can read it.

use super::components::{SPEECH_LORA, VAD};
use super::llama::LlamaConfig;
use super::lora::{Adapter, LoraConfig};
use super::mapped::{MappedBytes, MappedTensor, SharedText};
use super::packed::{Format, PackedMatrix};
use super::projector::ProjectorConfig;
use super::weights::{ClaimedLater, Stored, Weights};
use super::whisper::WhisperConfig;
use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Version 2 keeps the tokenizers as byte tensors ([`TOKENIZER`]); version 1 files, which
/// keep them in the metadata, are still read.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_KEY: &str = "kioku.format_version";
/// JSON object naming the tensors stored as GGML blocks (`{"name": "q8_0"}`);
/// each is a U8 tensor of shape (rows, bytes per row).
const QUANTIZED_KEY: &str = "kioku.quantized";
/// JSON record of how `kioku merge` made the file (see [`ModelHeader::merge`]).
const MERGE_KEY: &str = "kioku.merge";

/// Metadata key of the speech adapter's configuration (model and projector files).
pub const SPEECH_LORA_KEY: &str = "speech_lora.config";
/// The tokenizers' JSON, as U8 tensors `tokenizer.whisper` and `tokenizer.llm`: part of the
/// header, not weights. In the metadata they were 3.3 MB of escaped JSON inside the JSON
/// header, which took 14 ms to parse before anything else could start (release build); as
/// tensors they are read in place, and the header is 0.1 MB.
const TOKENIZER: &str = "tokenizer";

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
    /// The Hugging Face checkpoint the weights are (`HuggingFaceTB/SmolLM2-135M-Instruct`),
    /// where known: what adapter files name as their base. A label only, left
    /// out of the model's identity, so models packed before it existed keep theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// Everything in the file except the tensors.
#[derive(Debug, Clone)]
pub struct ModelHeader {
    pub whisper: WhisperConfig,
    /// Shared, not copied, with every clone of the header (3.3 MB for both).
    pub whisper_tokenizer: SharedText,
    pub llm: LlamaConfig,
    pub llm_tokenizer: SharedText,
    pub chat_template: String,
    pub projector: Option<ProjectorConfig>,
    /// The speech adapter trained with the projector (tensors `speech_lora.*`).
    pub speech_lora: Option<LoraConfig>,
    pub provenance: Vec<Provenance>,
    /// How `kioku merge` made this file from a base model (inputs, method,
    /// parameters); None for a packed model.
    pub merge: Option<serde_json::Value>,
}

impl ModelHeader {
    /// sha256 (hex) of what fixes the base weights: each component's config and
    /// provenance. Storage choices (dtype, q8 blocks) are left out, so an
    /// adapter fits every packing of the same checkpoints, as a llama.cpp LoRA
    /// trained in f16 applies to a quantized model. A merge record changes the
    /// weights, so it is part of the identity: an adapter trained on the base
    /// is refused on a model merged from it, whose weights it never saw.
    pub fn base_identity(&self) -> Result<String> {
        self.identity_of(&["whisper", "llm", "projector"])
    }

    /// The identity of some components only ("whisper", "llm", "projector"):
    /// an adapter is checked against the components it changes, so a speaker
    /// adapter on Whisper stays valid when the projector is retrained.
    pub fn identity_of(&self, components: &[&str]) -> Result<String> {
        use sha2::Digest;
        let all = components.len() == 3;
        let mut fixed = serde_json::json!({});
        for component in components {
            fixed[*component] = match *component {
                "whisper" => serde_json::to_value(&self.whisper)?,
                "llm" => serde_json::to_value(&self.llm)?,
                // The speech adapter belongs to the projector; added only when present,
                // so models without one keep the identity they always had.
                "projector" => match &self.speech_lora {
                    Some(speech) => serde_json::json!([self.projector, speech]),
                    None => serde_json::to_value(&self.projector)?,
                },
                other => bail!("unknown model component `{other}`"),
            };
        }
        // The full identity hashes every provenance entry, as it always has, but the VAD's:
        // no adapter changes or depends on it, and models packed before it keep their identity.
        let provenance: Vec<Provenance> = self
            .provenance
            .iter()
            .filter(|p| p.component != VAD && (all || components.contains(&p.component.as_str())))
            .map(|p| Provenance { checkpoint: None, ..p.clone() })
            .collect();
        fixed["provenance"] = serde_json::to_value(provenance)?;
        // Added only when present, so packed models keep the identity they always had.
        if let Some(merge) = &self.merge {
            fixed["merge"] = merge.clone();
        }
        let digest = sha2::Sha256::digest(serde_json::to_vec(&fixed)?);
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The Hugging Face checkpoint of `component`, where the file records one.
    pub fn checkpoint_of(&self, component: &str) -> Option<&str> {
        self.provenance.iter().find(|p| p.component == component)?.checkpoint.as_deref()
    }

    fn to_metadata(&self) -> Result<HashMap<String, String>> {
        let mut m = HashMap::from([
            (FORMAT_KEY.to_string(), FORMAT_VERSION.to_string()),
            ("whisper.config".into(), serde_json::to_string(&self.whisper)?),
            ("llm.config".into(), serde_json::to_string(&self.llm)?),
            ("llm.chat_template".into(), self.chat_template.clone()),
            ("provenance".into(), serde_json::to_string(&self.provenance)?),
        ]);
        if let Some(p) = &self.projector {
            m.insert("projector.config".into(), serde_json::to_string(p)?);
        }
        if let Some(speech) = &self.speech_lora {
            m.insert(SPEECH_LORA_KEY.into(), serde_json::to_string(speech)?);
        }
        if let Some(merge) = &self.merge {
            m.insert(MERGE_KEY.into(), serde_json::to_string(merge)?);
        }
        Ok(m)
    }

    /// The tokenizers' JSON as stored in the file (see [`TOKENIZER`]).
    fn tokenizer_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        [("whisper", &self.whisper_tokenizer), ("llm", &self.llm_tokenizer)]
            .into_iter()
            .map(|(which, json)| {
                let bytes = Tensor::from_slice(json.as_bytes(), json.len(), &Device::Cpu)?;
                Ok((format!("{TOKENIZER}.{which}"), bytes))
            })
            .collect()
    }

    /// The header from the metadata `m`, with the tokenizers given by `tokenizer` ("whisper",
    /// "llm") from wherever this format version keeps them.
    fn from_metadata(m: &HashMap<String, String>, tokenizer: impl Fn(&str) -> Result<SharedText>) -> Result<Self> {
        let get = |key: &str| m.get(key).with_context(|| format!("metadata entry `{key}` is missing"));
        fn json<T: DeserializeOwned>(key: &str, text: &str) -> Result<T> {
            serde_json::from_str(text).with_context(|| format!("metadata entry `{key}` is not valid"))
        }
        Ok(Self {
            whisper: json("whisper.config", get("whisper.config")?)?,
            whisper_tokenizer: tokenizer("whisper")?,
            llm: json("llm.config", get("llm.config")?)?,
            llm_tokenizer: tokenizer("llm")?,
            chat_template: get("llm.chat_template")?.clone(),
            projector: m.get("projector.config").map(|t| json("projector.config", t)).transpose()?,
            speech_lora: m.get(SPEECH_LORA_KEY).map(|t| json(SPEECH_LORA_KEY, t)).transpose()?,
            provenance: json("provenance", get("provenance")?)?,
            merge: m.get(MERGE_KEY).map(|t| json(MERGE_KEY, t)).transpose()?,
        })
    }
}

/// A tensor as it goes into the file: dense in its own dtype, or GGML blocks
/// as a U8 tensor of shape (rows, bytes per row).
pub(crate) enum Encoded {
    Dense(Tensor),
    Blocks(GgmlDType, Tensor),
}

/// `t` (rows, cols) as `q` blocks, ready for [`Encoded::Blocks`].
pub(crate) fn encode_blocks(t: &Tensor, q: GgmlDType) -> Result<Tensor> {
    let blocks = QTensor::quantize(&t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?, q)?;
    let rows = t.dim(0)?;
    Ok(Tensor::from_vec(blocks.data()?.into_owned(), (rows, blocks.storage_size_in_bytes() / rows), &Device::Cpu)?)
}

/// Writes a model file atomically. Dense tensors are stored in `dtype` (f16
/// halves the file); tensors for which `quantize` returns a GGML type are
/// stored as its blocks, ready for quantized matmuls without work at load.
pub fn write(
    path: &Path,
    header: &ModelHeader,
    tensors: &BTreeMap<String, Tensor>,
    dtype: DType,
    quantize: impl Fn(&str) -> Option<GgmlDType>,
) -> Result<()> {
    let encoded = tensors
        .iter()
        .map(|(name, t)| {
            let t = t.to_device(&Device::Cpu)?;
            let encoded = match quantize(name) {
                Some(q) => Encoded::Blocks(
                    q,
                    encode_blocks(&t, q).with_context(|| format!("cannot quantize `{name}` to {q:?}"))?,
                ),
                None => Encoded::Dense(t.to_dtype(stored_dtype(name, dtype))?),
            };
            Ok((name.clone(), encoded))
        })
        .collect::<Result<_>>()?;
    write_encoded(path, header, encoded)
}

/// The dtype a dense tensor is stored in when the file is packed in `dtype`. The VAD stays f32:
/// it is 1.2 MB, and with f16 weights its probabilities move by up to 1.3e-3 on
/// tests/fixtures/vad (more than the 1e-3 its parity test allows).
fn stored_dtype(name: &str, dtype: DType) -> DType {
    if name.starts_with(&format!("{VAD}.")) {
        DType::F32
    } else {
        dtype
    }
}

/// Writes tensors already in their stored form, atomically.
pub(crate) fn write_encoded(path: &Path, header: &ModelHeader, tensors: Vec<(String, Encoded)>) -> Result<()> {
    let mut quantized = BTreeMap::new();
    let mut stored = Vec::with_capacity(tensors.len());
    for (name, encoded) in tensors {
        let t = match encoded {
            Encoded::Dense(t) => t,
            Encoded::Blocks(q, t) => {
                quantized.insert(name.clone(), ggml_name(q)?.to_string());
                t
            }
        };
        stored.push((name, t.contiguous()?));
    }
    stored.extend(header.tokenizer_tensors()?);
    let mut metadata = header.to_metadata()?;
    if !quantized.is_empty() {
        metadata.insert(QUANTIZED_KEY.into(), serde_json::to_string(&quantized)?);
    }
    crate::atomic::replace_with(path, |tmp| {
        safetensors::serialize_to_file(stored.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata), tmp)?;
        sort_header(tmp)
    })
}

/// Rewrites the JSON header of the safetensors file at `path` with its keys
/// sorted. safetensors writes the metadata map in hash order, which differs
/// from run to run; sorted, the same tensors and header give the same bytes.
/// The header keeps its length (same entries, other order), so the data stays put.
fn sort_header(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    file.read_exact(&mut header)?;
    // serde_json's maps are BTreeMaps (no `preserve_order`): parsing sorts the keys.
    let value: serde_json::Value = serde_json::from_slice(&header)?;
    let mut sorted = serde_json::to_vec(&value)?;
    if sorted.len() > header.len() {
        bail!("the sorted safetensors header is longer than the one written");
    }
    sorted.resize(header.len(), b' ');
    file.seek(SeekFrom::Start(8))?;
    file.write_all(&sorted)?;
    Ok(())
}

/// The block formats kioku stores, by the names used in the file.
const GGML_TYPES: [(&str, GgmlDType); 1] = [("q8_0", GgmlDType::Q8_0)];

fn ggml_name(dtype: GgmlDType) -> Result<&'static str> {
    GGML_TYPES
        .iter()
        .find(|(_, d)| *d == dtype)
        .map(|(n, _)| *n)
        .with_context(|| format!("{dtype:?} blocks are not supported"))
}

pub fn ggml_type(name: &str) -> Result<GgmlDType> {
    GGML_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .with_context(|| format!("unknown block format `{name}`"))
}

/// Where the default model comes from, for the error when none is found.
fn how_to_get_a_model() -> String {
    let installed =
        crate::home::data_dir().map(|d| format!(", or `make install` to put it in {}", d.join("models").display()));
    format!(
        "run `make model` in kioku's checkout to build the default one{}; set KIOKU_MODEL or --model to use another",
        installed.unwrap_or_default()
    )
}

/// A model file opened by memory map; nothing is copied until [`MappedModel::weights`].
pub struct MappedModel {
    /// Shared with the block-quantized matrices, which are used in place.
    mmap: std::sync::Arc<memmap2::Mmap>,
    /// Where tensor data begins (after the length prefix and the JSON header).
    data_start: usize,
    layout: safetensors::tensor::Metadata,
    pub header: ModelHeader,
    /// Tensors stored as GGML blocks, by name.
    quantized: HashMap<String, GgmlDType>,
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
        let file = std::fs::File::open(path).with_context(|| {
            format!("model file {} not found or unreadable ({})", path.display(), how_to_get_a_model())
        })?;
        // SAFETY: the file is only read; kioku replaces model files by rename,
        // never by writing in place, so the mapped bytes do not change under us.
        let mmap = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file) }.with_context(describe)?);
        // Also checks every tensor's offsets against the file length, so a
        // truncated file is reported now rather than when a tensor is read.
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| anyhow::anyhow!("not a safetensors file, or truncated or corrupt ({e})"))
            .with_context(describe)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let version = metadata.get(FORMAT_KEY).with_context(|| {
            format!("{} is a safetensors file but not a kioku model (no `{FORMAT_KEY}`)", path.display())
        })?;
        let header = match version.as_str() {
            "1" => ModelHeader::from_metadata(&metadata, |which| {
                let key = format!("{which}.tokenizer");
                Ok(metadata.get(&key).with_context(|| format!("metadata entry `{key}` is missing"))?.clone().into())
            }),
            "2" => ModelHeader::from_metadata(&metadata, |which| {
                let name = format!("{TOKENIZER}.{which}");
                let info = meta.info(&name).with_context(|| format!("the model file has no tensor `{name}`"))?;
                let (start, end) = info.data_offsets;
                let bytes = MappedBytes::new(mmap.clone(), 8 + header_len + start..8 + header_len + end)?;
                let text = SharedText::mapped(bytes).with_context(|| format!("`{name}` is not UTF-8 text"))?;
                // Read again to build the tokenizers, after which `assemble` releases them too.
                text.release();
                Ok(text)
            }),
            _ => bail!("{} has model format version {version}, this kioku reads versions 1 and {FORMAT_VERSION}; re-pack it with `kioku pack`", path.display()),
        };
        let header = header.with_context(describe)?;
        let quantized: HashMap<String, String> = match metadata.get(QUANTIZED_KEY) {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("metadata entry `{QUANTIZED_KEY}` is not valid"))
                .with_context(describe)?,
            None => HashMap::new(),
        };
        let quantized = quantized
            .into_iter()
            .map(|(k, v)| Ok((k, ggml_type(&v)?)))
            .collect::<Result<_>>()
            .with_context(describe)?;
        Ok(Self { mmap, data_start: 8 + header_len, layout: meta, header, quantized })
    }

    /// The names of every stored tensor, sorted; the tokenizers, part of the header, left out.
    pub fn names(&self) -> Vec<String> {
        let tokenizer = format!("{TOKENIZER}.");
        let mut names: Vec<String> =
            self.layout.tensors().into_keys().filter(|name| !name.starts_with(&tokenizer)).collect();
        names.sort();
        names
    }

    /// Every stored tensor, from the header parsed once in [`MappedModel::open`].
    fn views(&self) -> Result<Vec<(String, TensorView<'_>)>> {
        self.names()
            .into_iter()
            .map(|name| {
                let view = self.view(&name)?;
                Ok((name, view))
            })
            .collect()
    }

    pub fn tensor_infos(&self) -> Result<Vec<TensorInfo>> {
        let mut infos: Vec<TensorInfo> = self
            .views()?
            .into_iter()
            .map(|(name, view)| match self.quantized.get(&name) {
                Some(q) => TensorInfo {
                    shape: self.logical_shape(view.shape(), *q),
                    dtype: ggml_name(*q).unwrap_or("?").to_uppercase(),
                    name,
                },
                None => TensorInfo { name, dtype: format!("{:?}", view.dtype()), shape: view.shape().to_vec() },
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    /// The matrix stored as `q` blocks in `view`, read in place from the mapping.
    fn blocks(&self, view: &TensorView<'_>, q: GgmlDType) -> Result<PackedMatrix> {
        let shape = self.logical_shape(view.shape(), q);
        Ok(PackedMatrix::mapped(Format::Q8_0, self.bytes_of(view)?, shape[0], shape[1])?)
    }

    /// Where `view`'s data lies in the mapping.
    fn bytes_of(&self, view: &TensorView<'_>) -> Result<MappedBytes> {
        let start = view.data().as_ptr() as usize - self.mmap.as_ptr() as usize;
        Ok(MappedBytes::new(self.mmap.clone(), start..start + view.data().len())?)
    }

    /// (rows, bytes per row) of stored blocks -> (rows, columns) of the matrix.
    fn logical_shape(&self, stored: &[usize], q: GgmlDType) -> Vec<usize> {
        vec![stored[0], stored.get(1).copied().unwrap_or(0) / q.type_size() * q.block_size()]
    }

    /// The block format of `name` if it is stored as GGML blocks.
    pub fn block_type(&self, name: &str) -> Option<GgmlDType> {
        self.quantized.get(name).copied()
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.layout.info(name).with_context(|| format!("the model file has no tensor `{name}`"))?;
        let (start, end) = info.data_offsets;
        Ok(TensorView::new(info.dtype, info.shape.clone(), &self.mmap[self.data_start + start..self.data_start + end])?)
    }

    /// The tensor `name` exactly as stored, on the CPU, ready to be written again.
    pub(crate) fn encoded(&self, name: &str) -> Result<Encoded> {
        let t = self.view(name)?.load(&Device::Cpu)?;
        Ok(match self.block_type(name) {
            Some(q) => Encoded::Blocks(q, t),
            None => Encoded::Dense(t),
        })
    }

    /// The shape of `name` as a matrix or vector (blocks counted as the values they hold).
    pub fn dense_shape(&self, name: &str) -> Result<Vec<usize>> {
        let view = self.view(name)?;
        Ok(match self.block_type(name) {
            Some(q) => self.logical_shape(view.shape(), q),
            None => view.shape().to_vec(),
        })
    }

    /// Whether `name` is stored byte for byte the same here and in `other`.
    pub fn stored_equal(&self, other: &MappedModel, name: &str) -> Result<bool> {
        let (mine, theirs) = (self.view(name)?, other.view(name)?);
        Ok(self.block_type(name) == other.block_type(name)
            && mine.dtype() == theirs.dtype()
            && mine.shape() == theirs.shape()
            && mine.data() == theirs.data())
    }

    /// `values` (f32, the shape of `name`) stored the way `name` is stored
    /// here: as the same blocks, or dense in the same dtype.
    pub(crate) fn encode_like(&self, name: &str, values: &Tensor) -> Result<Encoded> {
        Ok(match self.block_type(name) {
            Some(q) => Encoded::Blocks(q, encode_blocks(values, q)?),
            None => Encoded::Dense(values.to_dtype(self.view(name)?.dtype().try_into()?)?),
        })
    }

    /// The tensor `name` as a dense f32 tensor on the CPU (blocks dequantized),
    /// with its logical shape.
    pub fn dense_f32(&self, name: &str) -> Result<Tensor> {
        let view = self.view(name)?;
        let dense = match self.block_type(name) {
            Some(q) => self.blocks(&view, q)?.dequantize(&Device::Cpu)?,
            None => view.load(&Device::Cpu)?.to_dtype(DType::F32)?,
        };
        Ok(dense)
    }

    /// Every tensor, left in the mapping: block-quantized matrices are used in
    /// place, dense tensors are copied onto `device` (and cast to `dtype`)
    /// when a model claims them.
    pub fn weights(&self, device: &Device, dtype: DType) -> Result<Weights> {
        let tensors = self
            .views()?
            .into_iter()
            .map(|(name, view)| {
                let read = || -> Result<Stored> {
                    Ok(match self.quantized.get(&name) {
                        Some(&q) => Stored::Quantized(self.blocks(&view, q)?),
                        None => Stored::Mapped(MappedTensor::new(
                            self.bytes_of(&view)?,
                            view.dtype().try_into()?,
                            view.shape().into(),
                        )?),
                    })
                };
                let stored = read().with_context(|| format!("cannot read tensor `{name}`"))?;
                Ok((name, stored))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Weights::from_stored(tensors, dtype, device))
    }
}

/// Claims the speech adapter stored in a model file (tensors `speech_lora.*`), if it has one.
pub fn take_speech_adapter(weights: &Weights, header: &ModelHeader) -> Result<Option<Adapter>> {
    claim_speech_adapter(weights, header).map(SpeechAdapterFactors::read).transpose()
}

/// Claims the speech adapter's tensors, if the file has one, leaving them in the file until
/// [`SpeechAdapterFactors::read`].
pub fn claim_speech_adapter(weights: &Weights, header: &ModelHeader) -> Option<SpeechAdapterFactors> {
    let config = header.speech_lora?;
    Some(SpeechAdapterFactors { config, factors: weights.pp(SPEECH_LORA).claim_all() })
}

/// The speech adapter's factors, claimed and not read yet.
pub struct SpeechAdapterFactors {
    config: LoraConfig,
    factors: ClaimedLater,
}

impl SpeechAdapterFactors {
    pub fn read(self) -> Result<Adapter> {
        Adapter::from_factors(self.config, self.factors.into_f32()?).context("the model's speech adapter is invalid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_model() -> MappedModel {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kioku-tiny-en.safetensors");
        MappedModel::open(&path).expect("the default model (`make model`)")
    }

    #[test]
    fn the_tokenizers_are_read_in_place_and_listed_with_no_weights() {
        let model = default_model();
        assert!(model.header.whisper_tokenizer.contains("<|startoftranscript|>"));
        assert!(model.header.llm_tokenizer.contains("<|im_start|>"));
        assert!(matches!(model.header.llm_tokenizer, SharedText::Mapped(_)), "not copied out of the file");
        assert!(model.layout.info("tokenizer.llm").is_some(), "stored as a tensor");
        assert!(!model.names().iter().any(|name| name.starts_with("tokenizer")));
        assert!(model.header.to_metadata().unwrap().keys().all(|key| !key.ends_with("tokenizer")));
    }

    #[test]
    fn a_version_2_file_without_readable_tokenizers_is_refused_with_their_name() {
        let mut metadata = default_model().header.to_metadata().unwrap();
        metadata.insert(FORMAT_KEY.into(), "2".into());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.safetensors");
        let error = |tensors: Vec<(&str, Tensor)>| {
            safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (*n, t)), Some(metadata.clone()), &path)
                .unwrap();
            format!("{:#}", MappedModel::open(&path).err().expect("refused"))
        };
        let bias = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let missing = error(vec![("vad.bias", bias.clone())]);
        assert!(missing.contains("no tensor `tokenizer.whisper`"), "{missing}");
        let not_text = Tensor::from_slice(&[0xffu8, 0xfe, 0x00], 3, &Device::Cpu).unwrap();
        let garbled = error(vec![("vad.bias", bias), ("tokenizer.whisper", not_text)]);
        assert!(garbled.contains("`tokenizer.whisper` is not UTF-8 text"), "{garbled}");
    }

    #[test]
    fn a_version_1_file_with_the_tokenizers_in_its_metadata_still_opens() {
        let header = default_model().header;
        let mut metadata = header.to_metadata().unwrap();
        metadata.insert(FORMAT_KEY.into(), "1".into());
        metadata.insert("whisper.tokenizer".into(), header.whisper_tokenizer.to_string());
        metadata.insert("llm.tokenizer".into(), header.llm_tokenizer.to_string());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.safetensors");
        let bias = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        safetensors::serialize_to_file([("vad.bias", &bias)], Some(metadata), &path).unwrap();
        let v1 = MappedModel::open(&path).unwrap();
        assert!(*v1.header.whisper_tokenizer == *header.whisper_tokenizer);
        assert!(*v1.header.llm_tokenizer == *header.llm_tokenizer);
        assert_eq!(v1.names(), ["vad.bias"]);
    }
}
