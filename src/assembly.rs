//! Putting a model together from its file: the one place where inference
//! ([`crate::assistant::Assistant`]) and speaker adaptation
//! ([`crate::adapt::trainer::SpeakerTrainer`]) build the components, the
//! speech adapter and the tokenizers, so the two cannot drift apart.

use crate::generation::ChatTemplate;
use crate::model::adapter_scope::{ActiveAdapter, ScopedAdapter};
use crate::model::file::{take_speech_adapter, MappedModel, ModelHeader, ASR_DECODER, ENCODER, LLM, PROJECTOR, VAD};
use crate::model::llama::Llama;
use crate::model::lora::{LinearShapes, LoraSet};
use crate::model::projector::Projector;
use crate::model::silero::SileroVad;
use crate::model::whisper::{AsrDecoder, WhisperEncoder, WhisperSpecialTokens};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::path::Path;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// What to build, and on which path.
pub(crate) struct Recipe {
    /// The trainable path: dense f32 weights, no packed kernels. Otherwise the
    /// device's inference dtype and the file's packed weights.
    pub trainable: bool,
    /// Build the LLM, the projector and the speech adapter; speaker
    /// adaptation leaves them out when only Whisper trains.
    pub llm: bool,
    /// Build the voice activity detector, when the file has one (for `listen`).
    pub vad: bool,
    /// Adapters on the linear layers: applied ones for inference, fresh
    /// trainable ones for adaptation.
    pub lora: Arc<LoraSet>,
}

/// A model's components as [`assemble`] built them.
pub(crate) struct Parts {
    pub header: ModelHeader,
    pub encoder: WhisperEncoder,
    pub asr_decoder: AsrDecoder,
    pub llm: Option<Llama>,
    pub projector: Option<Projector>,
    pub vad: Option<SileroVad>,
    /// The model's speech adapter, ready to switch on for audio turns.
    pub speech_adapter: Option<ActiveAdapter>,
    /// What per-call adapters are checked against.
    pub linear_shapes: LinearShapes,
    pub whisper_tokenizer: Tokenizer,
    pub whisper_special: WhisperSpecialTokens,
    pub llm_tokenizer: Tokenizer,
    pub chat: ChatTemplate,
}

pub(crate) fn tokenizer_from_json(json: &str, which: &str) -> Result<Tokenizer> {
    crate::model::tokenizer_json::tokenizer_from_json(json)
        .map_err(|e| anyhow::anyhow!("the {which} tokenizer in the model file is invalid: {e}"))
}

/// Builds what `recipe` asks for from the model file `mapped` (opened from
/// `path`, named in errors) on `device`, and drops the mapping.
pub(crate) fn assemble(mapped: MappedModel, path: &Path, device: &Device, recipe: Recipe) -> Result<Parts> {
    let header = mapped.header.clone();
    let dtype = if recipe.trainable { DType::F32 } else { crate::device::default_dtype(device) };
    // Building the two tokenizers from their JSON takes about as long as
    // building the models, so it runs beside it.
    std::thread::scope(|s| {
        let whisper_tokenizer = s.spawn(|| tokenizer_from_json(&header.whisper_tokenizer, "Whisper"));
        let llm_tokenizer = s.spawn(|| tokenizer_from_json(&header.llm_tokenizer, "LLM"));
        let weights = mapped.weights(device, dtype)?.with_dense_only(recipe.trainable);
        // The speech adapter stays as stored: it is switched on per audio turn,
        // never trained here. Without the LLM, nothing runs it.
        let speech_adapter = if recipe.llm { take_speech_adapter(&weights, &header)? } else { None };
        let weights = weights.with_lora(recipe.lora.clone());
        let describe = || format!("model {} does not match its own configuration", path.display());
        let encoder = WhisperEncoder::load(&weights.pp(ENCODER), &header.whisper).with_context(describe)?;
        let asr_decoder = AsrDecoder::load(&weights.pp(ASR_DECODER), &header.whisper).with_context(describe)?;
        let llm = recipe.llm.then(|| Llama::load(&weights.pp(LLM), &header.llm)).transpose().with_context(describe)?;
        let projector = match &header.projector {
            Some(cfg) if recipe.llm => Some(Projector::load(&weights.pp(PROJECTOR), cfg).with_context(describe)?),
            _ => None,
        };
        // 0.6 ms of the ~97 ms load (release): cheaper than keeping the
        // mapping open to build it later.
        let vad_weights = weights.pp(VAD);
        let vad = if recipe.vad && vad_weights.contains("stft_conv.weight") {
            Some(SileroVad::load(&vad_weights).with_context(describe)?)
        } else {
            None
        };
        if recipe.llm && recipe.vad {
            weights.ensure_all_claimed().with_context(describe)?;
        }
        recipe.lora.ensure_all_attached()?;
        let linear_shapes = recipe.lora.linear_shapes();
        let speech_adapter = speech_adapter
            .map(|adapter| {
                let prepared = ScopedAdapter::prepare(&adapter, "speech adapter", &linear_shapes, device, dtype)?;
                Ok::<_, anyhow::Error>((Arc::new(prepared), 1.0))
            })
            .transpose()?;
        let chat = ChatTemplate::new(&header.chat_template)?;
        let whisper_tokenizer =
            whisper_tokenizer.join().unwrap_or_else(|_| bail!("reading the Whisper tokenizer failed"))?;
        let llm_tokenizer = llm_tokenizer.join().unwrap_or_else(|_| bail!("reading the LLM tokenizer failed"))?;
        let whisper_special = WhisperSpecialTokens::from_tokenizer(&whisper_tokenizer, &header.whisper)?;
        Ok(Parts {
            header: header.clone(),
            encoder,
            asr_decoder,
            llm,
            projector,
            vad,
            speech_adapter,
            linear_shapes,
            whisper_tokenizer,
            whisper_special,
            llm_tokenizer,
            chat,
        })
    })
}
