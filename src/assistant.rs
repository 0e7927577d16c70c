//! The assistant: one loaded model file and the two ways of answering a spoken
//! question. Cascade: Whisper transcript -> LLM. End-to-end: encoder frames ->
//! projector -> spliced into the LLM prompt (needs a model with a projector).

use crate::assembly::{assemble, tokenizer_from_json, Recipe};
use crate::audio::mel::Mel;
use crate::audio::mel::HOP_LENGTH;
use crate::audio::MelExtractor;
use crate::error::{Error, InputError};
use crate::generation::{ChatMessage, ChatTemplate, Sampler, SamplingOptions, StopFilter, TokenStream};
use crate::model::adapter_scope::{self, ActiveAdapter, AdapterScope, DeferredAdapter, ScopedAdapter};
use crate::model::audio_turn::AudioTurn;
use crate::model::bpe::TextTokenizer;
use crate::model::components::LLM;
use crate::model::file::{MappedModel, ModelHeader};
use crate::model::llama::{Llama, LlamaCache};
use crate::model::lora::{Adapter, LinearShapes};
use crate::model::ops::Path as OpsPath;
use crate::model::peft::{self, AdapterSpec};
use crate::model::projector::Projector;
use crate::model::silero::SileroVad;
use crate::model::whisper::{AsrDecoder, WhisperConfig, WhisperEncoder, WhisperSpecialTokens, WhisperVocab};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Transcribe with Whisper, then answer the transcript.
    Cascade,
    /// Feed projected audio straight into the LLM.
    E2e,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Cascade, Mode::E2e];

    /// Its name on the command line and in requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cascade => "cascade",
            Mode::E2e => "e2e",
        }
    }
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

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn, or a stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The caller cancelled (see [`Request::cancel`]).
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub transcript: Option<String>,
    pub answer: String,
    pub timings_ms: Timings,
    pub answer_tokens: usize,
    /// Tokens the LLM read before answering (projected audio frames count one each).
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// Answer tokens per second of decoding (after the first token).
    pub tokens_per_s: f64,
}

/// What the user asks in this turn.
#[derive(Debug, Clone, Copy)]
pub enum Question<'a> {
    Text(&'a str),
    /// 16 kHz mono samples, optionally followed by a typed instruction about them
    /// (for example [`REPEAT_INSTRUCTION`]).
    Audio {
        samples: &'a [f32],
        mode: Mode,
        instruction: Option<&'a str>,
    },
}

/// One call to [`Assistant::respond`]: the question and everything that is
/// per call. Nothing here outlives the call, so concurrent calls on one
/// shared `Assistant` cannot affect each other.
#[derive(Clone)]
pub struct Request<'a> {
    pub question: Question<'a>,
    /// Earlier turns, oldest first; spoken turns as their transcripts.
    pub history: &'a [ChatMessage],
    pub sampling: SamplingOptions,
    /// Adapters for this call only, at their scales (see [`Assistant::prepare_adapter`]).
    pub adapters: &'a [ActiveAdapter],
    /// Set from another thread to stop generating; the answer so far is returned.
    pub cancel: Option<&'a AtomicBool>,
    /// Told, for a transcribed question (cascade mode, no instruction), how likely the LLM finds it
    /// that the words end the user's turn ([`Assistant::end_of_turn_probability`]), before
    /// answering starts. It is read off the answer's own prefill, for about 10 ms.
    pub on_turn_end: Option<&'a dyn Fn(f32)>,
}

impl<'a> Request<'a> {
    pub fn new(question: Question<'a>, sampling: SamplingOptions) -> Self {
        Self { question, history: &[], sampling, adapters: &[], cancel: None, on_turn_end: None }
    }
}

/// What the user said, as the LLM reads it: text (typed, or a transcript) or
/// projected audio, optionally followed by a typed instruction about that audio.
enum UserTurn<'a> {
    Text(Cow<'a, str>),
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
    whisper_vocab: WhisperVocab,
    /// Built from the header when a transcription prompt first needs encoding.
    whisper_tokenizer: OnceLock<TextTokenizer>,
    whisper_special: WhisperSpecialTokens,
    llm_tokenizer: TextTokenizer,
    chat: ChatTemplate,
    /// The rendered chat prompt before and after the user's words.
    turn_template: (String, String),
    prefix: OnceLock<PromptPrefix>,
    /// See [`Assistant::endings`].
    endings: OnceLock<Vec<u32>>,
    /// The model's speech adapter: on for audio turns through the LLM only,
    /// so typed questions get the base LLM.
    speech_adapter: Option<DeferredAdapter>,
    /// What per-call adapters are checked against.
    linear_shapes: LinearShapes,
    mel: MelExtractor,
    /// Silero VAD, when the model file has one: shared with the threads that listen.
    vad: Option<Arc<SileroVad>>,
    device: Device,
    load_ms: f64,
}

const SAMPLE_RATE: f64 = 16_000.0;

/// The shortest audio the encoder accepts: two mel frames.
pub const MIN_SAMPLES: usize = HOP_LENGTH * 2;

/// Seconds of audio per encoder output frame.
const ENCODER_FRAME_S: f64 = 0.02;

/// Half a second of silence appended to every window: with none, Whisper's
/// decoder sometimes misses the end of short clips and repeats the last word
/// ("5 5 5 5 …" on pocketsphinx's cards clip 004).
pub const TRAILING_SILENCE: usize = 8_000;

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Token ids of `text` without added special tokens (those written in it are matched whole).
pub(crate) fn token_ids(tokenizer: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer.encode(text, false).map_err(anyhow::Error::msg)?.get_ids().to_vec())
}

impl Assistant {
    /// Memory-maps `path`, builds every component on `device`, drops the mapping.
    pub fn load(path: &Path, device: &Device) -> Result<Self, Error> {
        Self::load_with_adapters(path, device, &[])
    }

    /// Like [`Assistant::load`], with LoRA adapters applied at their scales.
    pub fn load_with_adapters(path: &Path, device: &Device, adapters: &[AdapterSpec]) -> Result<Self, Error> {
        Self::build(path, device, adapters).map_err(Error::model)
    }

    fn build(path: &Path, device: &Device, adapters: &[AdapterSpec]) -> Result<Self> {
        let start = Instant::now();
        let mapped = MappedModel::open(path)?;
        let lora = Arc::new(peft::load_all(adapters, &mapped.header)?);
        let parts = assemble(mapped, path, device, Recipe { trainable: false, llm: true, vad: true, lora })?;
        Ok(Self {
            encoder: parts.encoder,
            asr_decoder: parts.asr_decoder,
            projector: parts.projector,
            llm: parts.llm.context("the LLM was not built")?,
            whisper_special: parts.whisper_special,
            whisper_vocab: parts.whisper_vocab,
            whisper_tokenizer: OnceLock::new(),
            llm_tokenizer: parts.llm_tokenizer,
            turn_template: split_turn_template(&parts.chat, &[])?,
            chat: parts.chat,
            prefix: OnceLock::new(),
            endings: OnceLock::new(),
            speech_adapter: parts.speech_adapter,
            linear_shapes: parts.linear_shapes,
            mel: MelExtractor::new(parts.header.whisper.n_mels),
            vad: parts.vad.map(Arc::new),
            header: parts.header,
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

    /// The model file's voice activity detector, if it has one.
    pub fn vad(&self) -> Option<&Arc<SileroVad>> {
        self.vad.as_ref()
    }

    pub fn llm_tokenizer(&self) -> &TextTokenizer {
        &self.llm_tokenizer
    }

    /// Whisper's full tokenizer, for encoding text (a transcription prompt); built on first use.
    fn whisper_tokenizer(&self) -> Result<&TextTokenizer> {
        if let Some(tokenizer) = self.whisper_tokenizer.get() {
            return Ok(tokenizer);
        }
        let tokenizer = tokenizer_from_json(&self.header.whisper_tokenizer, "Whisper")?;
        Ok(self.whisper_tokenizer.get_or_init(|| tokenizer))
    }

    /// Reads the PEFT adapter directory `dir`, checking it was made for this model.
    pub fn read_adapter(&self, dir: &Path) -> Result<Adapter, Error> {
        peft::load(dir, &self.header).map_err(Error::model)
    }

    /// Makes `adapter` ready to be switched on per call ([`Request::adapters`]),
    /// at any scale, without reloading the model.
    pub fn prepare_adapter(&self, adapter: &Adapter, label: &str) -> Result<Arc<ScopedAdapter>, Error> {
        let dtype = crate::device::default_dtype(&self.device);
        let prepared = ScopedAdapter::prepare(adapter, label, &self.linear_shapes, &self.device, dtype);
        Ok(Arc::new(prepared.map_err(Error::model)?))
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

    /// Encoder outputs of consecutive windows of 16 kHz audio ([`encoder_windows`]).
    fn encode(&self, samples: &[f32], timings: &mut Timings) -> Result<Vec<Tensor>> {
        let t = Instant::now();
        let windows = encoder_windows(&self.mel, self.encoder.config(), samples)?;
        timings.mel += ms_since(t);
        let t = Instant::now();
        let outputs = windows
            .iter()
            .map(|mel| self.encoder.forward(&mel.to_tensor(&self.device)?, OpsPath::Fast))
            .collect::<Result<_>>()?;
        timings.encoder += ms_since(t);
        Ok(outputs)
    }

    fn transcribe_encoded(
        &self,
        encoded: &[Tensor],
        prompt: Option<&str>,
        timings: &mut Timings,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<String> {
        let t = Instant::now();
        let mut pieces = Vec::new();
        let window_s = window_samples(self.encoder.config()) as f64 / SAMPLE_RATE;
        let clip_s = |enc: &Tensor| -> Result<f64> {
            Ok((enc.dim(1)? as f64 * ENCODER_FRAME_S - TRAILING_SILENCE as f64 / SAMPLE_RATE).max(0.0))
        };
        // Whisper's own prompts begin with a space, as text in mid-sentence does.
        let previous = match prompt.map(str::trim).filter(|p| !p.is_empty()) {
            Some(prompt) => token_ids(self.whisper_tokenizer()?, &format!(" {prompt}"))?,
            None => Vec::new(),
        };
        for (i, enc) in encoded.iter().enumerate() {
            let ids = self.asr_decoder.transcribe_after(enc, &self.whisper_special, &previous)?;
            let text = self.whisper_vocab.decode(&ids).trim().to_string();
            let start = i as f64 * window_s;
            on_segment(&Segment {
                index: i,
                start_s: start,
                end_s: start + clip_s(enc)?,
                text: text.clone(),
                tokens: ids,
            });
            pieces.push(text);
        }
        timings.asr_decode += ms_since(t);
        Ok(pieces.join(" ").trim().to_string())
    }

    /// Transcribes 16 kHz mono audio of any length.
    pub fn transcribe(&self, samples: &[f32]) -> Result<(String, Timings), Error> {
        self.transcribe_segments(samples, &[], None, &mut |_| {})
    }

    /// Transcribes 16 kHz mono audio of any length under per-call `adapters`,
    /// each window conditioned on `prompt` (names, spelling, style) when given;
    /// `on_segment` receives each window's text as soon as it is decoded.
    pub fn transcribe_segments(
        &self,
        samples: &[f32],
        adapters: &[ActiveAdapter],
        prompt: Option<&str>,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<(String, Timings), Error> {
        let start = Instant::now();
        let _scope = AdapterScope::enter(adapters);
        let mut timings = Timings::default();
        let text = self
            .encode(samples, &mut timings)
            .and_then(|encoded| self.transcribe_encoded(&encoded, prompt, &mut timings, on_segment))
            .map_err(Error::working)?;
        timings.total = ms_since(start);
        Ok((text, timings))
    }

    /// Answers a typed question; `on_text` receives the answer as it streams.
    pub fn ask_text(
        &self,
        question: &str,
        sampling: &SamplingOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer, Error> {
        self.respond(&Request::new(Question::Text(question), sampling.clone()), on_text)
    }

    /// Answers a spoken question (16 kHz mono samples).
    pub fn ask_audio(
        &self,
        samples: &[f32],
        mode: Mode,
        sampling: &SamplingOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer, Error> {
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
    ) -> Result<Answer, Error> {
        self.respond(&Request::new(Question::Audio { samples, mode, instruction }, sampling.clone()), on_text)
    }

    /// Answers one request: the single entry point behind `kioku ask`,
    /// `kioku listen` and `kioku serve`. `on_text` receives the answer as it streams.
    pub fn respond(&self, request: &Request, on_text: &mut dyn FnMut(&str)) -> Result<Answer, Error> {
        self.answer(request, on_text).map_err(Error::working)
    }

    fn answer(&self, request: &Request, on_text: &mut dyn FnMut(&str)) -> Result<Answer> {
        let start = Instant::now();
        let mut timings = Timings::default();
        let _scope = AdapterScope::enter(request.adapters);
        let (turn, transcript) = match request.question {
            Question::Text(text) => (UserTurn::Text(Cow::Borrowed(text)), None),
            Question::Audio { samples, mode, instruction } => {
                let encoded = self.encode(samples, &mut timings)?;
                match mode {
                    Mode::Cascade => {
                        let transcript = self.transcribe_encoded(&encoded, None, &mut timings, &mut |_| {})?;
                        if transcript.is_empty() {
                            bail!(InputError::NoSpeech);
                        }
                        let turn = match instruction {
                            Some(instruction) => format!("{transcript}{INSTRUCTION_SEPARATOR}{instruction}"),
                            None => transcript.clone(),
                        };
                        (UserTurn::Text(Cow::Owned(turn)), Some(transcript))
                    }
                    Mode::E2e => {
                        let Some(projector) = &self.projector else { bail!(InputError::NoProjector) };
                        let projected =
                            encoded.iter().map(|e| projector.forward(e, OpsPath::Fast)).collect::<Result<Vec<_>>>()?;
                        (UserTurn::Audio { audio: Tensor::cat(&projected, 1)?, instruction }, None)
                    }
                }
            }
        };
        let answer = self.generate(turn, request, start, &mut timings, on_text)?;
        Ok(Answer { transcript, ..answer })
    }

    /// Does the one-off work of the first question ahead of time (the cached
    /// prompt prefix, the projected silence context, the end-of-turn tokens),
    /// so a long-running listener answers its first question as fast as the later ones.
    pub fn warm_up(&self) -> Result<()> {
        self.asr_decoder.warm_up()?;
        self.endings()?;
        self.prompt_prefix().map(|_| ())
    }

    /// How likely the user's turn is over after `words`, as the LLM reads them: the probability
    /// that a sentence or the turn ends next. (`listen` gets it for free with the answer's
    /// prefill; see [`Request::on_turn_end`].)
    pub fn end_of_turn_probability(&self, words: &str) -> Result<f32> {
        let words = unpunctuated(words);
        if words.is_empty() {
            return Ok(0.0);
        }
        let ids = self.token_ids(&format!("{}{words}", self.turn_template.0))?;
        let (mut cache, rest) = self.after_prefix(&ids)?;
        let logits = self.llm.next_token_logits(&self.embed_ids(rest)?, &mut cache)?;
        self.ending_probability(&logits)
    }

    /// The probability mass of [`Assistant::endings`] in next-token `logits`.
    fn ending_probability(&self, logits: &Tensor) -> Result<f32> {
        let probabilities = candle_nn::ops::softmax_last_dim(logits)?.to_vec1::<f32>()?;
        Ok(self.endings()?.iter().map(|&id| probabilities.get(id as usize).copied().unwrap_or(0.0)).sum())
    }

    /// The LLM's tokens that end a sentence or the turn: its end-of-turn token, and those whose
    /// text starts with `.`, `?` or `!`.
    fn endings(&self) -> Result<&[u32]> {
        if let Some(endings) = self.endings.get() {
            return Ok(endings);
        }
        let end_of_turn = *self
            .token_ids(&self.turn_template.1)?
            .first()
            .context("the chat template has nothing after the user's turn")?;
        let mut endings: Vec<u32> = self
            .llm_tokenizer
            .get_vocab(false)
            .into_iter()
            .filter(|(token, _)| token.starts_with(['.', '?', '!']) && !token.starts_with(".."))
            .map(|(_, id)| id)
            .collect();
        endings.push(end_of_turn);
        Ok(self.endings.get_or_init(|| endings))
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
        self.llm.forward_embeds(&self.embed_ids(&ids)?, Some(&mut cache), OpsPath::Fast)?;
        let cache = cache.compacted()?;
        Ok(self.prefix.get_or_init(|| PromptPrefix { ids, cache }))
    }

    /// The chat prompt before and after the user's words, after `history`.
    fn turn_template_after(&self, history: &[ChatMessage]) -> Result<Cow<'_, (String, String)>> {
        if history.is_empty() {
            return Ok(Cow::Borrowed(&self.turn_template));
        }
        Ok(Cow::Owned(split_turn_template(&self.chat, history)?))
    }

    /// A cache holding the prompt up to `ids`' start when the shared prefix
    /// covers it, and the ids still to feed. The prefix was computed without
    /// per-call adapters, so it serves only calls whose adapters leave the LLM alone.
    fn after_prefix<'i>(&self, ids: &'i [u32]) -> Result<(LlamaCache, &'i [u32])> {
        if !adapter_scope::active_touches(&format!("{LLM}.")) {
            let prefix = self.prompt_prefix()?;
            // BPE may merge across the seam; then prefill from scratch.
            if let Some(rest) = ids.strip_prefix(prefix.ids.as_slice()) {
                return Ok((prefix.cache.duplicate()?, rest));
            }
        }
        Ok((self.llm.new_cache(), ids))
    }

    fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        self.llm.embed(&Tensor::new(ids, &self.device)?.unsqueeze(0)?)
    }

    /// The cache after the prompt that precedes the user's own turn, the
    /// embeddings still to feed, and the prompt's length in tokens.
    /// `on_turn_end` is told [`Assistant::end_of_turn_probability`] of a text turn.
    fn prompt(
        &self,
        user: &UserTurn,
        history: &[ChatMessage],
        on_turn_end: Option<&dyn Fn(f32)>,
    ) -> Result<(LlamaCache, Tensor, usize)> {
        let template = self.turn_template_after(history)?;
        let (before, after) = template.as_ref();
        match user {
            UserTurn::Text(text) => {
                let ids = self.token_ids(&format!("{before}{text}{after}"))?;
                let (mut cache, mut rest) = self.after_prefix(&ids)?;
                if let Some(on_turn_end) = on_turn_end {
                    // Prefilled in two parts, split after the words, when the prompt's tokens
                    // split there; otherwise the words are judged on their own.
                    let words = self.token_ids(&format!("{before}{}", unpunctuated(text)))?;
                    let done = ids.len() - rest.len();
                    match ids.strip_prefix(words.as_slice()) {
                        Some(_) if words.len() > done => {
                            let (head, tail) = rest.split_at(words.len() - done);
                            on_turn_end(self.ending_probability(
                                &self.llm.next_token_logits(&self.embed_ids(head)?, &mut cache)?,
                            )?);
                            rest = tail;
                        }
                        _ => on_turn_end(self.end_of_turn_probability(text)?),
                    }
                }
                Ok((cache, self.embed_ids(rest)?, ids.len()))
            }
            UserTurn::Audio { audio, instruction } => {
                let (before, after) = audio_turn_texts(template.as_ref(), *instruction);
                let (before, after) = (self.token_ids(&before)?, self.token_ids(&after)?);
                let (mut cache, head) = self.after_prefix(&before)?;
                if !head.is_empty() {
                    self.llm.forward_embeds(&self.embed_ids(head)?, Some(&mut cache), OpsPath::Fast)?;
                }
                let after_embeds = self.embed_ids(&after)?;
                let rest = Tensor::cat(&[&audio.to_dtype(after_embeds.dtype())?, &after_embeds], 1)?;
                Ok((cache, rest, before.len() + audio.dim(1)? + after.len()))
            }
        }
    }

    /// Token ids of rendered prompt text; special tokens in it are matched whole.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        token_ids(&self.llm_tokenizer, text)
    }

    fn generate(
        &self,
        user: UserTurn,
        request: &Request,
        start: Instant,
        timings: &mut Timings,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut sampler = Sampler::new(request.sampling.clone());
        let mut stream = TokenStream::new(&self.llm_tokenizer);
        let mut stop = StopFilter::new(&request.sampling.stop);
        let t = Instant::now();
        // The prompt before an audio turn runs without the speech adapter, the turn itself with it.
        let on_turn_end = match request.question {
            Question::Audio { mode: Mode::Cascade, instruction: None, .. } => request.on_turn_end,
            _ => None,
        };
        let (mut cache, prompt_embeds, prompt_tokens) = self.prompt(&user, request.history, on_turn_end)?;
        let (speech, _audio_turn): (&[ActiveAdapter], _) = match user {
            UserTurn::Audio { .. } => {
                let speech = self.speech_adapter.as_ref().map(DeferredAdapter::get).transpose()?;
                (speech.map_or(&[][..], std::slice::from_ref), Some(AudioTurn::enter()))
            }
            UserTurn::Text(_) => (&[], None),
        };
        let _speech = AdapterScope::enter(speech);
        let mut logits = self.llm.next_token_logits(&prompt_embeds, &mut cache)?;
        timings.prefill = ms_since(t);
        let decode_start = Instant::now();
        let eos = &self.llm.config().eos_token_ids;
        let mut finish_reason = FinishReason::Length;
        for step in 0..sampler.max_tokens() {
            if request.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                finish_reason = FinishReason::Cancelled;
                break;
            }
            let token = sampler.sample(&logits)?;
            if step == 0 {
                timings.first_token = ms_since(start);
            }
            if eos.contains(&token) {
                finish_reason = FinishReason::Stop;
                break;
            }
            if let Some(text) = stream.push(token)? {
                let shown = stop.push(&text);
                if !shown.is_empty() {
                    on_text(&shown);
                }
                if stop.stopped() {
                    finish_reason = FinishReason::Stop;
                    break;
                }
            }
            let input = self.llm.embed(&Tensor::new(&[[token]], &self.device)?)?;
            logits = self.llm.next_token_logits(&input, &mut cache)?;
        }
        let held = stop.finish();
        if !held.is_empty() {
            on_text(&held);
        }
        timings.decode = ms_since(decode_start);
        timings.total = ms_since(start);
        timings.load = self.load_ms;
        let n = stream.tokens().len();
        let answer = if stop.stopped() { stop.text().to_string() } else { stream.text()? };
        Ok(Answer {
            transcript: None,
            answer: answer.trim().to_string(),
            timings_ms: timings.clone(),
            answer_tokens: n,
            prompt_tokens,
            finish_reason,
            tokens_per_s: if timings.decode > 0.0 { n as f64 / (timings.decode / 1e3) } else { 0.0 },
        })
    }
}

/// `words` without the punctuation after them: Whisper punctuates half a question as readily as a
/// whole one ("What is the capital?"), while the LLM can tell the two apart by their words.
fn unpunctuated(words: &str) -> &str {
    words.trim().trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
}

/// The rendered chat prompt before and after the user's message, after `history`.
pub(crate) fn split_turn_template(chat: &ChatTemplate, history: &[ChatMessage]) -> Result<(String, String)> {
    let mut messages = history.to_vec();
    messages.push(ChatMessage::new("user", USER_PLACEHOLDER));
    let rendered = chat.render_messages(&messages)?;
    let (before, after) =
        rendered.split_once(USER_PLACEHOLDER).context("the chat template drops the user's message")?;
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

/// Samples per window of audio the encoder takes at once.
fn window_samples(config: &WhisperConfig) -> usize {
    config.max_mel_frames() * HOP_LENGTH - TRAILING_SILENCE
}

/// The log-mels the encoder takes for 16 kHz audio: consecutive windows of at
/// most 30 s, each with [`TRAILING_SILENCE`] appended. Inference and speaker
/// adaptation both prepare audio here, so the model trains on what it hears.
pub(crate) fn encoder_windows(mel: &MelExtractor, config: &WhisperConfig, samples: &[f32]) -> Result<Vec<Mel>> {
    if samples.len() < MIN_SAMPLES {
        bail!(InputError::TooShort { samples: samples.len() });
    }
    let window = window_samples(config);
    let mut padded = Vec::with_capacity(window + TRAILING_SILENCE);
    Ok(samples
        .chunks(window)
        .map(|chunk| {
            padded.clear();
            padded.extend_from_slice(chunk);
            padded.resize(chunk.len() + TRAILING_SILENCE, 0.0);
            mel.compute(&padded)
        })
        .collect())
}

/// Reads a WAV file as 16 kHz mono samples, the input every model here expects.
pub fn load_audio_16k(path: &Path) -> Result<Vec<f32>, Error> {
    crate::audio::read_wav(path).and_then(|audio| crate::audio::resample_to_16k(&audio)).map_err(Error::input)
}

/// One window of a transcription, reported as soon as it is decoded.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub index: usize,
    /// Where the window starts and its speech ends, in seconds from the start of the audio.
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
    /// Whisper's token ids for `text`.
    pub tokens: Vec<u32>,
}
