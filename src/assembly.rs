//! Putting a model together from its file: the one place where inference
//! ([`crate::assistant::Assistant`]) and speaker adaptation
//! ([`crate::adapt::trainer::SpeakerTrainer`]) build the components, the
//! speech adapter and the tokenizers, so the two cannot drift apart.

use crate::generation::ChatTemplate;
use crate::model::adapter_scope::{DeferredAdapter, ScopedAdapter};
use crate::model::bpe::TextTokenizer;
use crate::model::components::{ASR_DECODER, ENCODER, LLM, PROJECTOR, VAD};
use crate::model::file::{claim_speech_adapter, MappedModel, ModelHeader};
use crate::model::llama::Llama;
use crate::model::lora::{LinearShapes, LoraSet};
use crate::model::projector::Projector;
use crate::model::silero::SileroVad;
use crate::model::whisper::{AsrDecoder, WhisperEncoder, WhisperSpecialTokens, WhisperVocab};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::path::Path;
use std::sync::Arc;

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
    /// The model's speech adapter, prepared when first switched on for an audio turn.
    pub speech_adapter: Option<DeferredAdapter>,
    /// What per-call adapters are checked against.
    pub linear_shapes: LinearShapes,
    /// Whisper's tokens as text; whoever encodes text for Whisper builds its
    /// tokenizer from the header (see [`WhisperVocab`]).
    pub whisper_vocab: WhisperVocab,
    pub whisper_special: WhisperSpecialTokens,
    pub llm_tokenizer: TextTokenizer,
    pub chat: ChatTemplate,
}

pub(crate) fn tokenizer_from_json(json: &str, which: &str) -> Result<TextTokenizer> {
    crate::model::bpe::tokenizer_from_json(json)
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
        let whisper_vocab = s.spawn(|| {
            WhisperVocab::from_json(&header.whisper_tokenizer)
                .context("the Whisper tokenizer in the model file is invalid")
        });
        let llm_tokenizer = s.spawn(|| tokenizer_from_json(&header.llm_tokenizer, "LLM"));
        let weights = mapped.weights(device, dtype)?.with_dense_only(recipe.trainable);
        // The speech adapter stays as stored: it is switched on per audio turn,
        // never trained here. Without the LLM, nothing runs it.
        let speech_adapter = if recipe.llm { claim_speech_adapter(&weights, &header) } else { None };
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
        let speech_adapter = speech_adapter.map(|factors| {
            let (shapes, device) = (linear_shapes.clone(), device.clone());
            DeferredAdapter::new(move || {
                let prepared = ScopedAdapter::prepare(&factors.read()?, "speech adapter", &shapes, &device, dtype)?;
                Ok((Arc::new(prepared), 1.0))
            })
        });
        let chat = ChatTemplate::new(&header.chat_template)?;
        let whisper_vocab = whisper_vocab.join().unwrap_or_else(|_| bail!("reading the Whisper tokenizer failed"))?;
        let llm_tokenizer = llm_tokenizer.join().unwrap_or_else(|_| bail!("reading the LLM tokenizer failed"))?;
        // Built: their JSON need not stay in memory (Whisper's is read again for a prompt).
        header.whisper_tokenizer.release();
        header.llm_tokenizer.release();
        let whisper_special = WhisperSpecialTokens::from_vocab(&whisper_vocab, &header.whisper)?;
        Ok(Parts {
            header: header.clone(),
            encoder,
            asr_decoder,
            llm,
            projector,
            vad,
            speech_adapter,
            linear_shapes,
            whisper_vocab,
            whisper_special,
            llm_tokenizer,
            chat,
        })
    })
}
