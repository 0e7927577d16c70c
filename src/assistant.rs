//! The assistant: one loaded model file and the two ways of answering a spoken
//! question. Cascade: Whisper transcript -> LLM. End-to-end: encoder frames ->
//! projector -> spliced into the LLM prompt (needs a model with a projector).

use crate::audio::mel::HOP_LENGTH;
use crate::audio::MelExtractor;
use crate::generation::{ChatTemplate, Sampler, SamplingOptions, TokenStream};
use crate::model::file::{MappedModel, ModelHeader, ASR_DECODER, ENCODER, LLM, PROJECTOR};
use crate::model::lora::Gate;
use crate::model::llama::{Llama, LlamaCache};
use crate::model::ops::Path as OpsPath;
use crate::model::peft::{self, AdapterSpec};
use crate::model::projector::Projector;
use crate::model::whisper::{AsrDecoder, WhisperEncoder, WhisperSpecialTokens};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokenizers::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Transcribe with Whisper, then answer the transcript.
    Cascade,
    /// Feed projected audio straight into the LLM.
    E2e,
}

/// Milliseconds spent in each stage of answering one question.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub load: f64,
    pub mel: f64,
    pub encoder: f64,
    pub asr_decode: f64,
    pub prefill: f64,
    /// From the end of the audio (or the typed question) to the first answer token.
    pub first_token: f64,
    pub decode: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub transcript: Option<String>,
    pub answer: String,
    pub timings_ms: Timings,
    pub answer_tokens: usize,
    /// Answer tokens per second of decoding (after the first token).
    pub tokens_per_s: f64,
}

/// What the user said: text (typed, or a transcript) or projected audio,
/// optionally followed by a typed instruction about that audio.
enum UserTurn<'a> {
    Text(&'a str),
    Audio { audio: Tensor, instruction: Option<&'a str> },
}

/// The instruction that asks for a verbatim transcript (alignment training and evaluation).
pub const REPEAT_INSTRUCTION: &str = "Repeat exactly what I said.";

/// Separates spoken content from a typed instruction in the user turn (both modes).
const INSTRUCTION_SEPARATOR: &str = "\n\n";

struct PromptPrefix {
    ids: Vec<u32>,
    cache: LlamaCache,
}

/// Marker in the user turn where the question goes when the template is split.
const USER_PLACEHOLDER: &str = "<|kioku-user-turn|>";

pub struct Assistant {
    header: ModelHeader,
    encoder: WhisperEncoder,
    asr_decoder: AsrDecoder,
    projector: Option<Projector>,
    llm: Llama,
    whisper_tokenizer: Tokenizer,
    whisper_special: WhisperSpecialTokens,
    llm_tokenizer: Tokenizer,
    /// The rendered chat prompt before and after the user's words.
    turn_template: (String, String),
    prefix: OnceLock<PromptPrefix>,
    /// Open while an audio turn runs through the LLM (a no-op without a speech adapter).
    speech_gate: Gate,
    mel: MelExtractor,
    device: Device,
    load_ms: f64,
}

/// Half a second of silence appended to every window: with none, Whisper's
/// decoder sometimes misses the end of short clips and repeats the last word
/// ("5 5 5 5 …" on pocketsphinx's cards clip 004).
pub const TRAILING_SILENCE: usize = 8_000;

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Token ids of `text` without added special tokens (those written in it are matched whole).
pub(crate) fn token_ids(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer.encode(text, false).map_err(anyhow::Error::msg)?.get_ids().to_vec())
}

pub(crate) fn tokenizer_from_json(json: &str, which: &str) -> Result<Tokenizer> {
    Tokenizer::from_bytes(json.as_bytes()).map_err(|e| anyhow::anyhow!("the {which} tokenizer in the model file is invalid: {e}"))
}

impl Assistant {
    /// Memory-maps `path`, builds every component on `device`, drops the mapping.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_with_adapters(path, device, &[])
    }

    /// Like [`Assistant::load`], with LoRA adapters applied at their scales.
    pub fn load_with_adapters(path: &Path, device: &Device, adapters: &[AdapterSpec]) -> Result<Self> {
        let start = Instant::now();
        let dtype = crate::device::default_dtype(device);
        let mapped = MappedModel::open(path)?;
        let header = mapped.header.clone();
        let weights = mapped.weights(device, dtype)?;
        drop(mapped);
        let speech_gate = Gate::default();
        let lora = Arc::new(peft::load_all(adapters, &header)?.with_speech_adapter(&weights, &header, &speech_gate)?);
        let weights = weights.with_lora(lora.clone());
        let describe = || format!("model {} does not match its own configuration", path.display());
        let encoder = WhisperEncoder::load(&weights.pp(ENCODER), &header.whisper).with_context(describe)?;
        let asr_decoder = AsrDecoder::load(&weights.pp(ASR_DECODER), &header.whisper).with_context(describe)?;
        let llm = Llama::load(&weights.pp(LLM), &header.llm).with_context(describe)?;
        let projector =
            header.projector.as_ref().map(|cfg| Projector::load(&weights.pp(PROJECTOR), cfg)).transpose().with_context(describe)?;
        weights.ensure_all_claimed().with_context(describe)?;
        lora.ensure_all_attached()?;
        let whisper_tokenizer = tokenizer_from_json(&header.whisper_tokenizer, "Whisper")?;
        let whisper_special = WhisperSpecialTokens::from_tokenizer(&whisper_tokenizer, &header.whisper)?;
        Ok(Self {
            encoder,
            asr_decoder,
            projector,
            llm,
            whisper_special,
            whisper_tokenizer,
            llm_tokenizer: tokenizer_from_json(&header.llm_tokenizer, "LLM")?,
            turn_template: split_turn_template(&ChatTemplate::new(&header.chat_template)?)?,
            prefix: OnceLock::new(),
            speech_gate,
            mel: MelExtractor::new(header.whisper.n_mels),
            header,
            device: device.clone(),
            load_ms: ms_since(start),
        })
    }

    pub fn header(&self) -> &ModelHeader {
        &self.header
    }

    pub fn has_projector(&self) -> bool {
        self.projector.is_some()
    }

    pub fn llm_tokenizer(&self) -> &Tokenizer {
        &self.llm_tokenizer
    }

    /// The encoder output of a whole clip (1, frames, width): windows joined in time.
    pub fn encode_audio(&self, samples: &[f32]) -> Result<Tensor> {
        Ok(Tensor::cat(&self.encode(samples, &mut Timings::default())?, 1)?)
    }

    /// Token ids of the prompt before and after the projected audio of an
    /// end-to-end turn; training builds its prompts with these so that they
    /// match inference exactly.
    pub fn audio_turn_ids(&self, instruction: Option<&str>) -> Result<(Vec<u32>, Vec<u32>)> {
        let (before, after) = audio_turn_texts(&self.turn_template, instruction);
        Ok((self.token_ids(&before)?, self.token_ids(&after)?))
    }

    /// Encoder outputs of consecutive windows of 16 kHz audio, each at most
    /// 30 s including [`TRAILING_SILENCE`].
    fn encode(&self, samples: &[f32], timings: &mut Timings) -> Result<Vec<Tensor>> {
        if samples.len() < HOP_LENGTH * 2 {
            bail!("the audio is too short to contain speech ({} samples)", samples.len());
        }
        let window = self.encoder.config().max_mel_frames() * HOP_LENGTH - TRAILING_SILENCE;
        let mut outputs = Vec::new();
        for chunk in samples.chunks(window) {
            let t = Instant::now();
            let mut padded = Vec::with_capacity(chunk.len() + TRAILING_SILENCE);
            padded.extend_from_slice(chunk);
            padded.resize(chunk.len() + TRAILING_SILENCE, 0.0);
            let mel = self.mel.compute(&padded);
            timings.mel += ms_since(t);
            let t = Instant::now();
            outputs.push(self.encoder.forward(&mel.to_tensor(&self.device)?, OpsPath::Fast)?);
            timings.encoder += ms_since(t);
        }
        Ok(outputs)
    }

    fn transcribe_encoded(&self, encoded: &[Tensor], timings: &mut Timings) -> Result<String> {
        let t = Instant::now();
        let mut pieces = Vec::new();
        for enc in encoded {
            let ids = self.asr_decoder.transcribe(enc, &self.whisper_special)?;
            let text = self.whisper_tokenizer.decode(&ids, true).map_err(anyhow::Error::msg)?;
            pieces.push(text.trim().to_string());
        }
        timings.asr_decode += ms_since(t);
        Ok(pieces.join(" ").trim().to_string())
    }

    /// Transcribes 16 kHz mono audio of any length.
    pub fn transcribe(&self, samples: &[f32]) -> Result<(String, Timings)> {
        let start = Instant::now();
        let mut timings = Timings::default();
        let encoded = self.encode(samples, &mut timings)?;
        let text = self.transcribe_encoded(&encoded, &mut timings)?;
        timings.total = ms_since(start);
        Ok((text, timings))
    }

    /// Answers a typed question; `on_text` receives the answer as it streams.
    pub fn ask_text(&self, question: &str, sampling: &SamplingOptions, on_text: &mut dyn FnMut(&str)) -> Result<Answer> {
        let start = Instant::now();
        let mut timings = Timings::default();
        let answer = self.generate(UserTurn::Text(question), sampling, start, &mut timings, on_text)?;
        Ok(Answer { transcript: None, ..answer })
    }

    /// Answers a spoken question (16 kHz mono samples).
    pub fn ask_audio(
        &self,
        samples: &[f32],
        mode: Mode,
        sampling: &SamplingOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        self.ask_audio_with(samples, mode, None, sampling, on_text)
    }

    /// Answers spoken audio followed by a typed `instruction` about it (for
    /// example [`REPEAT_INSTRUCTION`]).
    pub fn ask_audio_with(
        &self,
        samples: &[f32],
        mode: Mode,
        instruction: Option<&str>,
        sampling: &SamplingOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let start = Instant::now();
        let mut timings = Timings::default();
        let encoded = self.encode(samples, &mut timings)?;
        match mode {
            Mode::Cascade => {
                let transcript = self.transcribe_encoded(&encoded, &mut timings)?;
                if transcript.is_empty() {
                    bail!("no speech was recognised in the audio");
                }
                let turn = match instruction {
                    Some(instruction) => format!("{transcript}{INSTRUCTION_SEPARATOR}{instruction}"),
                    None => transcript.clone(),
                };
                let answer = self.generate(UserTurn::Text(&turn), sampling, start, &mut timings, on_text)?;
                Ok(Answer { transcript: Some(transcript), ..answer })
            }
            Mode::E2e => {
                let Some(projector) = &self.projector else {
                    bail!("this model has no projector, so it cannot answer end-to-end; use --mode cascade or a model packed with --projector");
                };
                let audio = Tensor::cat(&encoded.iter().map(|e| projector.forward(e, OpsPath::Fast)).collect::<Result<Vec<_>>>()?, 1)?;
                // The shared prompt prefix is the text mode's: build it before the adapter switches on.
                self.prompt_prefix()?;
                let _speech = self.speech_gate.open();
                self.generate(UserTurn::Audio { audio, instruction }, sampling, start, &mut timings, on_text)
            }
        }
    }

    /// Does the one-off work of the first question ahead of time (the cached
    /// prompt prefix, the projected silence context), so a long-running listener answers its first question
    /// as fast as the later ones.
    pub fn warm_up(&self) -> Result<()> {
        self.asr_decoder.warm_up()?;
        self.prompt_prefix().map(|_| ())
    }

    /// The KV cache after the part of the chat prompt that precedes every
    /// question (system turn, user-turn header), computed once: each question
    /// then prefills only its own tokens.
    fn prompt_prefix(&self) -> Result<&PromptPrefix> {
        if let Some(prefix) = self.prefix.get() {
            return Ok(prefix);
        }
        let ids = self.token_ids(&self.turn_template.0)?;
        let mut cache = self.llm.new_cache();
        self.llm.forward_embeds(&self.llm.embed(&Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?)?, Some(&mut cache), OpsPath::Fast)?;
        Ok(self.prefix.get_or_init(|| PromptPrefix { ids, cache }))
    }

    /// A fresh cache holding the prompt prefix, and the embeddings that follow it.
    fn prompt(&self, user: UserTurn) -> Result<(LlamaCache, Tensor)> {
        let prefix = self.prompt_prefix()?;
        let (before, after) = &self.turn_template;
        let rest = match user {
            UserTurn::Text(text) => {
                let ids = self.token_ids(&format!("{before}{text}{after}"))?;
                // BPE may merge across the seam; then prefill from scratch.
                if !ids.starts_with(&prefix.ids) {
                    let embeds = self.llm.embed(&Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?)?;
                    return Ok((self.llm.new_cache(), embeds));
                }
                self.llm.embed(&Tensor::new(&ids[prefix.ids.len()..], &self.device)?.unsqueeze(0)?)?
            }
            UserTurn::Audio { audio, instruction } => {
                let (_, after) = self.audio_turn_ids(instruction)?;
                let after = self.llm.embed(&Tensor::new(after.as_slice(), &self.device)?.unsqueeze(0)?)?;
                Tensor::cat(&[&audio.to_dtype(after.dtype())?, &after], 1)?
            }
        };
        Ok((prefix.cache.duplicate()?, rest))
    }

    /// Token ids of rendered prompt text; special tokens in it are matched whole.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        token_ids(&self.llm_tokenizer, text)
    }

    fn generate(
        &self,
        user: UserTurn,
        sampling: &SamplingOptions,
        start: Instant,
        timings: &mut Timings,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut sampler = Sampler::new(sampling.clone());
        let mut stream = TokenStream::new(&self.llm_tokenizer);
        let t = Instant::now();
        let (mut cache, prompt_embeds) = self.prompt(user)?;
        let mut logits = self.llm.next_token_logits(&prompt_embeds, &mut cache)?;
        timings.prefill = ms_since(t);
        let decode_start = Instant::now();
        let eos = &self.llm.config().eos_token_ids;
        for step in 0..sampler.max_tokens() {
            let token = sampler.sample(&logits)?;
            if step == 0 {
                timings.first_token = ms_since(start);
            }
            if eos.contains(&token) {
                break;
            }
            if let Some(text) = stream.push(token)? {
                on_text(&text);
            }
            let input = self.llm.embed(&Tensor::new(&[[token]], &self.device)?)?;
            logits = self.llm.next_token_logits(&input, &mut cache)?;
        }
        timings.decode = ms_since(decode_start);
        timings.total = ms_since(start);
        timings.load = self.load_ms;
        let n = stream.tokens().len();
        Ok(Answer {
            transcript: None,
            answer: stream.text()?.trim().to_string(),
            timings_ms: timings.clone(),
            answer_tokens: n,
            tokens_per_s: if timings.decode > 0.0 { n as f64 / (timings.decode / 1e3) } else { 0.0 },
        })
    }
}

/// The rendered chat prompt before and after the user's message.
pub(crate) fn split_turn_template(chat: &ChatTemplate) -> Result<(String, String)> {
    let rendered = chat.render(None, USER_PLACEHOLDER)?;
    let (before, after) = rendered.split_once(USER_PLACEHOLDER).context("the chat template drops the user's message")?;
    Ok((before.to_string(), after.to_string()))
}

/// The prompt text before and after the projected audio of an end-to-end
/// turn, with `instruction` (if any) right after the audio.
pub(crate) fn audio_turn_texts(turn_template: &(String, String), instruction: Option<&str>) -> (String, String) {
    let (before, after) = turn_template;
    match instruction {
        Some(instruction) => (before.clone(), format!("{INSTRUCTION_SEPARATOR}{instruction}{after}")),
        None => (before.clone(), after.clone()),
    }
}

/// Reads a WAV file as 16 kHz mono samples, the input every model here expects.
pub fn load_audio_16k(path: &Path) -> Result<Vec<f32>> {
    crate::audio::resample_to_16k(&crate::audio::read_wav(path)?)
}
