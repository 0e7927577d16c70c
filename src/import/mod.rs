//! Builds kioku's merged model file from upstream checkpoints: CTranslate2 or
//! HF Whisper, GGUF or HF Llama, and optionally a trained projector. Adding an
//! importer: docs/ARCHITECTURE.md, "A new importer".

pub mod ctranslate2;
pub mod gguf;
pub mod hf;
pub mod random;
pub mod silero;
pub mod synthetic_tokenizer;

use crate::model::components::{ASR_DECODER, ENCODER, LLM, PROJECTOR, SPEECH_LORA, VAD};
use crate::model::file::{self, ModelHeader, Provenance, SPEECH_LORA_KEY};
use crate::model::llama::LlamaConfig;
use crate::model::lora::LoraConfig;
use crate::model::ops::Path as OpsPath;
use crate::model::projector::ProjectorConfig;
use crate::model::weights::Weights;
use crate::model::whisper::WhisperConfig;
use crate::model::whisper::{AsrDecoder, WhisperEncoder, SILENCE_CONTEXT};
use anyhow::{bail, Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A Whisper checkpoint converted to kioku names (`encoder.*`, `asr_decoder.*`).
pub struct ImportedWhisper {
    pub config: WhisperConfig,
    pub tokenizer: String,
    pub tensors: BTreeMap<String, Tensor>,
}

/// A Llama-family checkpoint converted to kioku names (`llm.*`).
pub struct ImportedLlm {
    pub config: LlamaConfig,
    pub tokenizer: String,
    pub chat_template: String,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Reads a Whisper checkpoint: a CTranslate2 directory (`model.bin` or its
/// parts) or a Hugging Face directory. Adds the decoder's silence context.
pub fn import_whisper(src: &Path) -> Result<ImportedWhisper> {
    if !src.is_dir() {
        bail!("Whisper source {} must be a directory (CTranslate2 or Hugging Face checkpoint)", src.display());
    }
    let mut whisper = if src.join("model.bin").exists() || src.join("model.bin.part1").exists() {
        ctranslate2::import(src)?
    } else {
        hf::import_whisper(src)?
    };
    add_silence_context(&mut whisper)?;
    Ok(whisper)
}

/// Adds the encoding of silence ([`silence_context`]) and its cross-attention keys and values,
/// projected once here rather than by every process's first transcription.
fn add_silence_context(whisper: &mut ImportedWhisper) -> Result<()> {
    let silence = silence_context(whisper)?;
    whisper.tensors.insert(format!("{ASR_DECODER}.{SILENCE_CONTEXT}"), silence);
    let decoder_tensors = whisper.tensors.iter().filter(|(k, _)| k.starts_with(&format!("{ASR_DECODER}.")));
    let weights =
        Weights::new(decoder_tensors.map(|(k, v)| (k.clone(), v.clone())).collect(), DType::F32, &Device::Cpu);
    let keys_and_values = AsrDecoder::load(&weights.pp(ASR_DECODER), &whisper.config)?.silence_kv_tensors()?;
    for (name, t) in keys_and_values {
        whisper.tensors.insert(format!("{ASR_DECODER}.{name}"), t);
    }
    Ok(())
}

/// The encoder's output for 30 s of silence, which the ASR decoder uses to
/// extend short clips to the context it was trained on.
fn silence_context(whisper: &ImportedWhisper) -> Result<Tensor> {
    let encoder_tensors = whisper
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENCODER}.")))
        .map(|(k, v)| (k.clone(), v.clone()));
    let weights = Weights::new(encoder_tensors.collect(), DType::F32, &Device::Cpu);
    WhisperEncoder::load(&weights.pp(ENCODER), &whisper.config)?.encode_silence(OpsPath::Fast)
}

/// Reads a Llama-family checkpoint: a `.gguf` file or a Hugging Face directory.
pub fn import_llm(src: &Path) -> Result<ImportedLlm> {
    if src.is_dir() {
        hf::import_llama(src)
    } else if src.exists() {
        gguf::import(src)
    } else {
        bail!("LLM source {} does not exist", src.display())
    }
}

/// Provenance the fetch step leaves beside what it extracted
/// (`provenance.json`); a user's own checkpoint is recorded by path.
fn provenance_for(component: &str, src: &Path) -> Provenance {
    let dir = if src.is_dir() { src.to_path_buf() } else { src.parent().map(Path::to_path_buf).unwrap_or_default() };
    let recorded = std::fs::read_to_string(dir.join("provenance.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Provenance>(&text).ok());
    let mut p = recorded.unwrap_or(Provenance {
        component: String::new(),
        source: src.display().to_string(),
        version: None,
        sha256: None,
        file: None,
        license: None,
        checkpoint: None,
    });
    p.component = component.to_string();
    p
}

/// What a model file is packed from.
pub enum PackSource {
    Checkpoints {
        whisper: PathBuf,
        llm: PathBuf,
        /// A safetensors file with `projector.*` tensors and a `projector.config` metadata entry.
        projector: Option<PathBuf>,
        /// Silero VAD weights (see [`silero`]).
        vad: Option<PathBuf>,
    },
    /// Seeded random weights in the shapes given (see [`random`]).
    Random { shapes: random::RandomShapes, seed: u64 },
}

pub struct PackOptions {
    pub source: PackSource,
    pub dtype: DType,
    /// Block format for the matrices read once per decoded token (None: dense).
    pub quantize: Option<GgmlDType>,
    pub output: PathBuf,
}

/// Tensors worth quantizing: the matrices that decoding streams through once
/// per token, i.e. the LLM's projections and both output heads. Norms, the
/// small Whisper layers and the embedding tables (read a row at a time) stay dense.
fn is_decode_matrix(name: &str) -> bool {
    let llm_projection = name.starts_with(&format!("{LLM}.")) && name.ends_with("_proj.weight");
    llm_projection || name == format!("{LLM}.lm_head.weight") || name == format!("{ASR_DECODER}.proj_out.weight")
}

/// Imports both components (and the projector), or makes them up from a
/// seed, checks that they fit together, and writes one merged model file atomically.
pub fn pack(opts: &PackOptions) -> Result<ModelHeader> {
    match &opts.source {
        PackSource::Checkpoints { whisper, llm, projector, vad } => {
            let imported_whisper =
                import_whisper(whisper).with_context(|| format!("cannot import Whisper from {}", whisper.display()))?;
            let imported_llm =
                import_llm(llm).with_context(|| format!("cannot import the LLM from {}", llm.display()))?;
            let mut provenance = vec![provenance_for("whisper", whisper), provenance_for("llm", llm)];
            let projector = match projector {
                Some(path) => {
                    provenance.push(provenance_for("projector", path));
                    Some((read_projector(path)?, path.display().to_string()))
                }
                None => None,
            };
            let mut vad_tensors = BTreeMap::new();
            if let Some(path) = vad {
                vad_tensors = silero::import(path)
                    .with_context(|| format!("cannot import Silero VAD from {}", path.display()))?;
                provenance.push(provenance_for(VAD, path));
            }
            write_packed(opts, imported_whisper, imported_llm, projector, vad_tensors, provenance)
        }
        PackSource::Random { shapes, seed } => {
            let mut model = random::random_model(*shapes, *seed)?;
            add_silence_context(&mut model.whisper)?;
            let projector = Some((model.projector, format!("random {shapes:?} projector")));
            write_packed(opts, model.whisper, model.llm, projector, model.vad, model.provenance)
        }
    }
}

/// Writes the components as one model file; `projector` comes with a name for errors, `vad` is
/// empty or Silero's `vad.*` tensors.
fn write_packed(
    opts: &PackOptions,
    whisper: ImportedWhisper,
    llm: ImportedLlm,
    projector: Option<(ProjectorFile, String)>,
    vad: BTreeMap<String, Tensor>,
    provenance: Vec<Provenance>,
) -> Result<ModelHeader> {
    let mut tensors = whisper.tensors;
    tensors.extend(vad);
    if opts.quantize.is_some() {
        // Tied heads get their own quantized copy; lookups keep the dense tables.
        let embeddings = format!("{ASR_DECODER}.embed_tokens.weight");
        tensors.insert(format!("{ASR_DECODER}.proj_out.weight"), tensors[&embeddings].clone());
        if llm.config.tie_word_embeddings {
            tensors.insert(format!("{LLM}.lm_head.weight"), llm.tensors[&format!("{LLM}.embed_tokens.weight")].clone());
        }
    }
    tensors.extend(llm.tensors);
    let mut speech_lora = None;
    let projector = match projector {
        Some((ProjectorFile { config, speech_lora: speech, tensors: projector_tensors }, name)) => {
            speech_lora = speech;
            if config.input_dim != whisper.config.d_model || config.output_dim != llm.config.hidden_size {
                bail!(
                    "projector {name} maps {} -> {}, but these models need {} -> {}",
                    config.input_dim,
                    config.output_dim,
                    whisper.config.d_model,
                    llm.config.hidden_size
                );
            }
            tensors.extend(projector_tensors);
            Some(config)
        }
        None => None,
    };
    let header = ModelHeader {
        whisper: whisper.config,
        whisper_tokenizer: whisper.tokenizer.into(),
        llm: llm.config,
        llm_tokenizer: llm.tokenizer.into(),
        chat_template: llm.chat_template,
        projector,
        speech_lora,
        provenance,
        merge: None,
    };
    file::write(&opts.output, &header, &tensors, opts.dtype, |name| opts.quantize.filter(|_| is_decode_matrix(name)))?;
    Ok(header)
}

/// A standalone projector file (the artefact projector training writes).
pub struct ProjectorFile {
    pub config: ProjectorConfig,
    /// Present when the LLM's speech adapter was trained with the projector.
    pub speech_lora: Option<LoraConfig>,
    /// `projector.*` and `speech_lora.*` tensors in f32.
    pub tensors: BTreeMap<String, Tensor>,
}

pub fn read_projector(path: &Path) -> Result<ProjectorFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read projector {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("projector {} is not a safetensors file ({e})", path.display()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let config_json = metadata
        .get("projector.config")
        .with_context(|| format!("projector {} has no `projector.config` metadata", path.display()))?;
    let config: ProjectorConfig = serde_json::from_str(config_json)?;
    let speech_lora: Option<LoraConfig> = metadata
        .get(SPEECH_LORA_KEY)
        .map(|t| {
            serde_json::from_str(t)
                .with_context(|| format!("projector {}: `{SPEECH_LORA_KEY}` is not valid", path.display()))
        })
        .transpose()?;
    let speech_prefix = format!("{SPEECH_LORA}.");
    let tensors: BTreeMap<String, Tensor> = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?
        .into_iter()
        .map(|(name, t)| {
            let keep = name.starts_with(&format!("{PROJECTOR}.")) || name.starts_with(&speech_prefix);
            let name = if keep { name } else { format!("{PROJECTOR}.{name}") };
            Ok((name, t.to_dtype(DType::F32)?))
        })
        .collect::<Result<_>>()?;
    if tensors.keys().any(|n| n.starts_with(&speech_prefix)) != speech_lora.is_some() {
        bail!("projector {}: speech adapter tensors and `{SPEECH_LORA_KEY}` must come together", path.display());
    }
    Ok(ProjectorFile { config, speech_lora, tensors })
}
