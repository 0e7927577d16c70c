//! Speaker adaptation: LoRA adapters trained on a new speaker's recordings with
//! Whisper's own objective, teacher-forced cross-entropy on the transcript
//! tokens after the prompt the inference decoder uses. Every step mixes in
//! items replayed from the buffer (docs/DESIGN.md, "Forgetting, and the
//! remedies kioku offers": the strongest remedy against forgetting): replayed
//! speech trains the same ASR loss, replayed text (prompt + the base model's
//! answer) trains the LLM's cross-entropy when LLM modules are among the
//! targets. When the LLM trains and the model has a projector, each new-speaker
//! clip also trains the end-to-end path: from the projected audio the LLM
//! repeats the transcript, or gives the base model's answer to it typed
//! ([`SpokenTarget`]), so the adapter learns the voice where spoken questions
//! reach it (and text forgetting can appear, which replayed text answers or
//! the audio-turn gate hold back). An optional L2 pull keeps the adapter
//! tensors near their start.

use super::data::Recording;
use super::replay::{ReplayBuffer, ReplayContent, ReplayItem};
use crate::assembly::{assemble, tokenizer_from_json, Parts, Recipe};
use crate::assistant::{audio_turn_texts, encoder_windows, split_turn_template, token_ids, REPEAT_INSTRUCTION};
use crate::audio::MelExtractor;
use crate::generation::ChatTemplate;
use crate::model::adapter_scope::{ActiveAdapter, AdapterScope};
use crate::model::audio_turn::AudioTurn;
use crate::model::bpe::TextTokenizer;
use crate::model::components::{ASR_DECODER, ENCODER, LLM, PROJECTOR};
use crate::model::file::{MappedModel, ModelHeader};
use crate::model::llama::Llama;
use crate::model::lora::{Adapter, LoraConfig, LoraSet, TargetModules};
use crate::model::ops::{KvSegment, Path as OpsPath};
use crate::model::projector::Projector;
use crate::model::whisper::{AsrDecoder, WhisperEncoder};
use crate::training::{AdamW, AdamWConfig, LrSchedule};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Targets of a plain `kioku adapt`: attention of the encoder (how the voice
/// sounds) and the whole ASR decoder (what it is heard as).
pub const DEFAULT_TARGETS: [&str; 2] = ["encoder-attn", "decoder"];

/// Longest replayed text answer trained on, in tokens: the start of an answer
/// carries what it is about, and the LLM's cost grows with every token.
pub const MAX_ANSWER_TOKENS: usize = 32;

/// The strength the LLM's adapters are saved at ([`AdaptConfig::llm_scale`]). Spoken answers in a
/// new voice agreeing with the typed ones, ten runs on three voices (docs/ADAPTATION.md, "Fresh
/// sentences, a third voice"): base 20.5 %; the Whisper adapters alone 20.0 %; with the LLM's at
/// 0.25 19.8 %, at 0.5 18.8 %, whole 18.0 %. All within the runs' noise, so the default is the
/// scale that keeps the LLM nearer the base.
pub const DEFAULT_LLM_SCALE: f64 = 0.25;

/// Share of replayed items that are text when the LLM trains.
const TEXT_SHARE: f64 = 0.5;

#[derive(Debug, Clone, PartialEq)]
pub struct AdaptConfig {
    /// Presets or regular expressions (see [`TargetModules`]).
    pub targets: Vec<String>,
    pub lora: LoraConfig,
    pub steps: usize,
    /// Examples per step, new and replayed together.
    pub batch_size: usize,
    pub peak_lr: f64,
    pub warmup_steps: usize,
    /// Share of each batch drawn from the replay buffer, in [0, 1).
    pub replay_ratio: f64,
    /// λ of the pull λ·Σ‖θ−θ_start‖² over the adapter tensors.
    pub l2: f64,
    pub seed: u64,
    /// The LLM's adapters act on audio turns only, as the speech adapter does:
    /// typed questions keep the unchanged LLM, and text items are not replayed.
    pub llm_on_audio_turns_only: bool,
    /// What the LLM learns to say after the new speaker's clips (when the LLM trains).
    pub spoken_target: SpokenTarget,
    /// The strength the LLM's adapters are saved at, as a share of what they learnt (a LoRA-scale
    /// discount; 1 keeps them as trained). The Whisper adapters are always saved whole.
    pub llm_scale: f64,
}

/// The LLM's target after a new-speaker clip in the end-to-end task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpokenTarget {
    /// The transcript, after [`REPEAT_INSTRUCTION`]: the LLM learns to hear the words.
    Transcript,
    /// The base model's answer to the transcript typed, with no instruction,
    /// as inference asks: the spoken question learns to get the typed answer.
    TypedAnswer,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self {
            targets: DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect(),
            lora: LoraConfig { rank: 8, alpha: 16.0, dropout: 0.05 },
            // Chosen on the study's new speaker (docs/ADAPTATION.md, "The
            // forgetting study"): lr 2e-3 gained as much on the new voice but
            // cost real speech twice as much (+0.022 vs +0.011 WER).
            steps: 20,
            batch_size: 8,
            peak_lr: 1e-3,
            warmup_steps: 4,
            replay_ratio: 0.25,
            l2: 0.0,
            seed: 0,
            // With LLM targets, ungated adapters lost half the typed answers in
            // the study (agreement 45-48 %), gated ones none (docs/ADAPTATION.md,
            // "The LLM arms").
            llm_on_audio_turns_only: true,
            // Over two voices and two seeds the typed-answer target beat the
            // transcript on new-speaker WER (0.071 vs 0.088 mean) and earlier
            // voices (0.223 vs 0.263), with spoken answers level (15.6 vs
            // 16.3 %: one question in 160) (docs/ADAPTATION.md, "The LLM arms").
            spoken_target: SpokenTarget::TypedAnswer,
            llm_scale: DEFAULT_LLM_SCALE,
        }
    }
}

impl AdaptConfig {
    /// Steps that go through `recordings` new-speaker items `epochs` times.
    pub fn steps_for_epochs(&self, epochs: usize, recordings: usize) -> usize {
        let new_per_step = self.batch_size - self.replayed_per_step(usize::MAX);
        (epochs * recordings).div_ceil(new_per_step.max(1)).max(1)
    }

    /// Replayed items in each batch, given how many the buffer holds (at least
    /// one new-speaker item is always left).
    fn replayed_per_step(&self, held: usize) -> usize {
        ((self.batch_size as f64 * self.replay_ratio).round() as usize).min(self.batch_size - 1).min(held)
    }

    /// Refuses settings no training can use, each in one line naming its flag.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.steps > 0, "--steps must be at least 1");
        ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        ensure!(self.peak_lr > 0.0 && self.peak_lr.is_finite(), "--lr must be a positive number");
        ensure!((0.0..1.0).contains(&self.replay_ratio), "--replay-ratio must be in [0, 1), got {}", self.replay_ratio);
        ensure!(self.l2 >= 0.0 && self.l2.is_finite(), "--l2 must be zero or positive");
        ensure!(self.lora.alpha > 0.0 && self.lora.alpha.is_finite(), "--alpha must be positive");
        ensure!(self.llm_scale > 0.0 && self.llm_scale.is_finite(), "--llm-scale must be a positive number");
        Ok(())
    }
}

/// One example of a batch.
enum Example<'a> {
    /// `key` names its cached mel or encoder output.
    Speech {
        key: String,
        audio: Cow<'a, [f32]>,
        text: &'a str,
        /// The base model's answer to `text` typed (new-speaker clips, when the spoken task needs it).
        typed_answer: Option<&'a str>,
    },
    Text {
        prompt: &'a str,
        answer: &'a str,
    },
}

/// What one step did.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// Mean cross-entropy of the batch (without the L2 term).
    pub loss: f32,
    pub new_items: usize,
    pub replayed_speech: usize,
    pub replayed_text: usize,
}

pub struct SpeakerTrainer {
    encoder: WhisperEncoder,
    decoder: AsrDecoder,
    /// Loaded only when LLM modules are among the targets.
    llm: Option<Llama>,
    /// The end-to-end task, when the LLM trains and a projector exists.
    spoken: Option<SpokenTask>,
    /// The model's speech adapter, if any, switched on while the spoken task runs.
    speech: Option<ActiveAdapter>,
    lora: Arc<LoraSet>,
    optimizer: AdamW,
    /// The adapter tensors at the start, for the L2 pull.
    start: BTreeMap<String, Tensor>,
    schedule: LrSchedule,
    config: AdaptConfig,
    header: ModelHeader,
    whisper_tokenizer: TextTokenizer,
    whisper_prompt: Vec<u32>,
    end_of_text: u32,
    llm_tokenizer: TextTokenizer,
    chat: ChatTemplate,
    end_of_turn: u32,
    mel: MelExtractor,
    /// Per speech example: its encoder output while the encoder is frozen,
    /// else its log-mel (the encoder must run on every step).
    cache: HashMap<String, Tensor>,
    encoder_trains: bool,
    /// The silence context's cross-attention keys/values when no adapter sits
    /// on those projections (else they are projected once per batch).
    frozen_silence: Option<Vec<KvSegment>>,
    device: Device,
}

impl SpeakerTrainer {
    /// Loads the components the targets need with dense f32 weights (the
    /// training path) and fresh adapters on every target module.
    pub fn new(model: &Path, config: AdaptConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let targets = TargetModules::new(&config.targets)?;
        let mapped = MappedModel::open(model)?;
        let targeted: Vec<String> = mapped
            .tensor_infos()?
            .into_iter()
            .filter_map(|info| info.name.strip_suffix(".weight").map(str::to_string))
            .filter(|module| targets.matches(module))
            .collect();
        if targeted.iter().any(|m| m.starts_with(&format!("{PROJECTOR}."))) {
            bail!("kioku adapt trains the speech recogniser and the LLM; leave the projector out of --targets");
        }
        let trains = |component: &str| targeted.iter().any(|m| m.starts_with(&format!("{component}.")));
        let (encoder_trains, trains_llm) = (trains(ENCODER), trains(LLM));
        let cross_kv_trains = targeted.iter().any(|m| {
            m.starts_with(ASR_DECODER) && (m.ends_with("encoder_attn.k_proj") || m.ends_with("encoder_attn.v_proj"))
        });
        let lora = LoraSet::default().train(config.lora, targets, config.seed)?;
        let lora = Arc::new(lora.with_llm_on_audio_turns_only(config.llm_on_audio_turns_only));
        // The speech adapter stays frozen; the spoken task trains through it as inference runs it.
        let recipe = Recipe { trainable: true, llm: trains_llm, vad: false, lora: lora.clone() };
        let Parts {
            header,
            encoder,
            asr_decoder: decoder,
            llm,
            projector,
            speech_adapter: speech,
            whisper_vocab: _,
            whisper_special: special,
            llm_tokenizer,
            chat,
            ..
        } = assemble(mapped, model, device, recipe)?;
        let speech = speech.as_ref().map(|speech| speech.get().cloned()).transpose()?;
        let whisper_tokenizer = tokenizer_from_json(&header.whisper_tokenizer, "Whisper")?;
        let frozen_silence = if cross_kv_trains { None } else { Some(decoder.project_silence()?) };

        let vars: BTreeMap<String, Var> = lora
            .vars()
            .into_iter()
            .flat_map(|(module, v)| [(format!("{module}.lora_A"), v.a), (format!("{module}.lora_B"), v.b)])
            .collect();
        let start = vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?))).collect::<Result<_>>()?;
        // No weight decay: it would pull A toward zero, not toward its start (that is --l2).
        let optimizer = AdamW::new(vars, AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() })?;
        let schedule = LrSchedule {
            peak: config.peak_lr,
            warmup_steps: config.warmup_steps,
            total_steps: config.steps,
            final_fraction: 0.1,
        };
        if llm.is_some() && projector.is_none() && config.llm_on_audio_turns_only {
            bail!(
                "this model has no projector, so no audio turn ever reaches its LLM: adapters gated to audio turns \
                 would never act; pass --llm-turns all to adapt the LLM on text"
            );
        }
        let spoken = match (&llm, projector) {
            (Some(_), Some(projector)) => {
                Some(SpokenTask::new(projector, config.spoken_target, &chat, &llm_tokenizer)?)
            }
            _ => None,
        };
        Ok(Self {
            encoder,
            decoder,
            llm,
            spoken,
            speech,
            lora,
            optimizer,
            start,
            schedule,
            whisper_prompt: special.prompt(),
            end_of_text: special.end_of_text,
            whisper_tokenizer,
            llm_tokenizer,
            chat,
            end_of_turn: *header.llm.eos_token_ids.first().context("the LLM has no end-of-turn token")?,
            mel: MelExtractor::new(header.whisper.n_mels),
            header,
            cache: HashMap::new(),
            encoder_trains,
            frozen_silence,
            device: device.clone(),
            config,
        })
    }

    pub fn config(&self) -> &AdaptConfig {
        &self.config
    }

    pub fn header(&self) -> &ModelHeader {
        &self.header
    }

    /// Whether LLM modules train, so that replayed text items count.
    pub fn trains_llm(&self) -> bool {
        self.llm.is_some()
    }

    /// Whether the LLM's adapters act on text turns, so that text items train them.
    pub fn trains_llm_on_text(&self) -> bool {
        self.trains_llm() && !self.config.llm_on_audio_turns_only
    }

    /// Whether the new speaker's recordings need their [`Recording::typed_answer`].
    pub fn needs_typed_answers(&self) -> bool {
        self.spoken.as_ref().is_some_and(|s| s.target == SpokenTarget::TypedAnswer)
    }

    pub fn steps_taken(&self) -> usize {
        self.optimizer.steps_taken()
    }

    /// Number of trainable tensors and their parameters.
    pub fn trainable_size(&self) -> (usize, usize) {
        let vars = self.optimizer.vars();
        (vars.len(), vars.values().map(|v| v.elem_count()).sum())
    }

    /// The adapters as trained so far, ready for [`crate::model::peft::save`].
    pub fn adapter(&self) -> Result<Adapter> {
        self.lora.trained()
    }

    /// One optimizer step on the batch of step `steps_taken()`.
    pub fn step(&mut self, recordings: &[Recording], replay: Option<&ReplayBuffer>) -> Result<StepOutcome> {
        ensure!(!recordings.is_empty(), "no recordings to adapt to");
        let step = self.optimizer.steps_taken();
        let (examples, mut outcome) = self.batch(step, recordings, replay);
        self.lora.set_dropout_active(true);
        let loss = self.mean_loss(&examples)?;
        outcome.loss = loss.to_scalar::<f32>()?;
        if !outcome.loss.is_finite() {
            bail!("the training loss became {} at step {step}; lower --lr", outcome.loss);
        }
        let objective = if self.config.l2 > 0.0 { (&loss + (self.l2_distance()? * self.config.l2)?)? } else { loss };
        let report = self.optimizer.step(&objective.backward()?, self.schedule.at(step))?;
        ensure!(report.without_gradient == 0, "{} adapter tensors got no gradient", report.without_gradient);
        Ok(outcome)
    }

    /// Mean ASR loss over `recordings`, without dropout or training.
    pub fn speech_loss(&mut self, recordings: &[Recording]) -> Result<f32> {
        self.lora.set_dropout_active(false);
        let examples: Vec<Example> = recordings.iter().map(|r| new_example(r)).collect();
        Ok(self.mean_loss(&examples)?.to_scalar::<f32>()?)
    }

    /// New-speaker items and replayed ones for `step`. New items go through
    /// the recordings in a fresh seeded order each epoch; replayed ones are a
    /// seeded draw, so a run repeats exactly.
    fn batch<'a>(
        &self,
        step: usize,
        recordings: &'a [Recording],
        replay: Option<&'a ReplayBuffer>,
    ) -> (Vec<Example<'a>>, StepOutcome) {
        let n_replay = self.config.replayed_per_step(replay.map_or(0, ReplayBuffer::len));
        let n_new = self.config.batch_size - n_replay;
        let seed = self.config.seed;
        let mut examples: Vec<Example> = (0..n_new)
            .map(|j| {
                let global = step * n_new + j;
                let (epoch, position) = (global / recordings.len(), global % recordings.len());
                let mut order: Vec<usize> = (0..recordings.len()).collect();
                order.shuffle(&mut StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                new_example(&recordings[order[position]])
            })
            .collect();
        let mut outcome = StepOutcome { loss: 0.0, new_items: n_new, replayed_speech: 0, replayed_text: 0 };
        if let Some(buffer) = replay.filter(|_| n_replay > 0) {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let text_share = if self.trains_llm_on_text() { TEXT_SHARE } else { 0.0 };
            for item in buffer.sample_mixed(n_replay, text_share, &mut rng) {
                match replayed_example(item) {
                    Example::Text { .. } if !self.trains_llm_on_text() => continue,
                    example @ Example::Text { .. } => {
                        outcome.replayed_text += 1;
                        examples.push(example);
                    }
                    example => {
                        outcome.replayed_speech += 1;
                        examples.push(example);
                    }
                }
            }
        }
        (examples, outcome)
    }

    /// Mean over examples of each example's mean token cross-entropy.
    fn mean_loss(&mut self, examples: &[Example]) -> Result<Tensor> {
        let silence = match &self.frozen_silence {
            Some(kv) => kv.clone(),
            None => self.decoder.project_silence()?,
        };
        let mut losses = Vec::with_capacity(examples.len());
        for example in examples {
            match example {
                Example::Speech { key, audio, text, typed_answer } => {
                    let context = || format!("training item {key}");
                    let encoded = self.encoded(key, audio).with_context(context)?;
                    losses.push(self.asr_loss(&encoded, text, &silence).with_context(context)?);
                    if let Some(spoken) = self.spoken.as_ref().filter(|_| key.starts_with(NEW_KEY)) {
                        let reply = match spoken.target {
                            SpokenTarget::Transcript => text,
                            SpokenTarget::TypedAnswer => typed_answer.context(
                                "no typed answer for this clip: `adapt` fills Recording::typed_answer, or use SpokenTarget::Transcript",
                            )?,
                        };
                        losses.push(self.spoken_loss(&encoded, reply).with_context(context)?);
                    }
                }
                Example::Text { prompt, answer } => losses.push(self.text_loss(prompt, answer)?),
            }
        }
        Ok(Tensor::stack(&losses, 0)?.mean_all()?)
    }

    /// Teacher-forced cross-entropy of the transcript and end-of-text after
    /// Whisper's prompt, against the clip padded and extended as at inference.
    fn asr_loss(&self, encoded: &Tensor, text: &str, silence: &[KvSegment]) -> Result<Tensor> {
        let text_ids = self.whisper_tokenizer.encode(format!(" {}", text.trim()), false).map_err(anyhow::Error::msg)?;
        let mut ids = self.whisper_prompt.clone();
        ids.extend(text_ids.get_ids());
        ids.push(self.end_of_text);
        let input = Tensor::new(&ids[..ids.len() - 1], &self.device)?.unsqueeze(0)?;
        let mut state = self.decoder.start_padded(encoded, silence)?;
        let logits = self.decoder.forward(&input, &mut state, OpsPath::Trainable)?.squeeze(0)?;
        // The last prompt position predicts the first text token.
        let first = self.whisper_prompt.len() - 1;
        cross_entropy(&logits.narrow(0, first, ids.len() - 1 - first)?, &ids[first + 1..], &self.device)
    }

    /// The clip's encoder output: from the cache while the encoder is frozen,
    /// else computed on the training path from its cached log-mel.
    fn encoded(&mut self, key: &str, audio: &[f32]) -> Result<Tensor> {
        let cached = match self.cache.get(key) {
            Some(t) => t.clone(),
            None => {
                let [mel] = &encoder_windows(&self.mel, &self.header.whisper, audio)?[..] else {
                    bail!("a training clip must fit one 30 s window of the encoder");
                };
                let mel = mel.to_tensor(&self.device)?;
                let entry = if self.encoder_trains { mel } else { self.encoder.forward(&mel, OpsPath::Fast)?.detach() };
                self.cache.insert(key.to_string(), entry.clone());
                entry
            }
        };
        if self.encoder_trains {
            self.encoder.forward(&cached, OpsPath::Trainable)
        } else {
            Ok(cached)
        }
    }

    /// Teacher-forced cross-entropy of `reply` as the LLM's reply to the
    /// projected clip, in the prompt inference uses for the task's target.
    fn spoken_loss(&self, encoded: &Tensor, reply: &str) -> Result<Tensor> {
        let (llm, spoken) = (
            self.llm.as_ref().context("the spoken task needs the LLM")?,
            self.spoken.as_ref().context("no projector")?,
        );
        let target = self.reply_ids(reply.trim())?;
        let embed = |ids: &[u32]| llm.embed(&Tensor::new(ids, &self.device)?.unsqueeze(0)?);
        let audio_embeds = spoken.projector.forward(encoded, OpsPath::Trainable)?;
        let after: Vec<u32> = spoken.after.iter().chain(&target[..target.len() - 1]).copied().collect();
        // As at inference, the prompt before the audio runs without the speech
        // adapter and the audio turn with it. Its keys and values come from the
        // inference cache, whose in-place writes carry no gradient; the audio
        // turn's own tokens still reach every adapter.
        let mut before = llm.new_cache();
        llm.forward_embeds(&embed(&spoken.before)?, Some(&mut before), OpsPath::Fast)?;
        let _audio_turn = AudioTurn::enter();
        let _speech = AdapterScope::enter(self.speech.as_slice());
        let input = Tensor::cat(&[audio_embeds, embed(&after)?], 1)?;
        let hidden = llm.forward_after_prefix(&input, &before.to_frozen_prefix()?, OpsPath::Trainable)?;
        // The last prompt position predicts the first target token.
        let first = input.dim(1)? - target.len();
        let logits = llm.logits(&hidden.narrow(1, first, target.len())?)?.squeeze(0)?;
        cross_entropy(&logits, &target, &self.device)
    }

    /// Teacher-forced cross-entropy of the base model's answer (its first
    /// [`MAX_ANSWER_TOKENS`], then end of turn if it fits) after the chat prompt.
    fn text_loss(&self, prompt: &str, answer: &str) -> Result<Tensor> {
        let llm = self.llm.as_ref().context("text items train the LLM, which no target adapts")?;
        let prompt_ids = token_ids(&self.llm_tokenizer, &self.chat.render(None, prompt)?)?;
        let target = self.reply_ids(answer)?;
        let ids: Vec<u32> = prompt_ids.iter().chain(&target[..target.len() - 1]).copied().collect();
        let input = llm.embed(&Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?)?;
        let hidden = llm.forward_embeds(&input, None, OpsPath::Trainable)?;
        let logits = llm.logits(&hidden.narrow(1, prompt_ids.len() - 1, target.len())?)?.squeeze(0)?;
        cross_entropy(&logits, &target, &self.device)
    }

    /// A reply's first [`MAX_ANSWER_TOKENS`] tokens, then end of turn if it fits.
    fn reply_ids(&self, reply: &str) -> Result<Vec<u32>> {
        let mut ids = token_ids(&self.llm_tokenizer, reply)?;
        if ids.len() < MAX_ANSWER_TOKENS {
            ids.push(self.end_of_turn);
        }
        ids.truncate(MAX_ANSWER_TOKENS);
        Ok(ids)
    }

    /// Σ‖θ−θ_start‖² over every adapter tensor.
    fn l2_distance(&self) -> Result<Tensor> {
        let mut total = Tensor::zeros((), DType::F32, &self.device)?;
        for (name, var) in self.optimizer.vars() {
            total = (total + (var.as_tensor() - &self.start[name])?.sqr()?.sum_all()?)?;
        }
        Ok(total)
    }
}

/// The projector (frozen) and the prompt around its output for the spoken task.
struct SpokenTask {
    projector: Projector,
    target: SpokenTarget,
    before: Vec<u32>,
    after: Vec<u32>,
}

impl SpokenTask {
    fn new(projector: Projector, target: SpokenTarget, chat: &ChatTemplate, tokenizer: &TextTokenizer) -> Result<Self> {
        let instruction = match target {
            SpokenTarget::Transcript => Some(REPEAT_INSTRUCTION),
            SpokenTarget::TypedAnswer => None,
        };
        let (before, after) = audio_turn_texts(&split_turn_template(chat, &[])?, instruction);
        Ok(Self { projector, target, before: token_ids(tokenizer, &before)?, after: token_ids(tokenizer, &after)? })
    }
}

/// Cache-key prefix of the new speaker's clips (replayed ones use `replay:`).
const NEW_KEY: &str = "new:";

fn new_example(recording: &Recording) -> Example<'_> {
    Example::Speech {
        key: format!("{NEW_KEY}{}", recording.id),
        audio: Cow::Borrowed(&recording.audio_16k),
        text: &recording.text,
        typed_answer: recording.typed_answer.as_deref(),
    }
}

fn replayed_example(item: &ReplayItem) -> Example<'_> {
    match &item.content {
        ReplayContent::Speech { transcript, .. } => Example::Speech {
            key: format!("replay:{}", item.id),
            audio: Cow::Owned(item.audio_16k()),
            text: transcript,
            typed_answer: None,
        },
        ReplayContent::Text { prompt, answer } => Example::Text { prompt, answer },
    }
}

fn cross_entropy(logits: &Tensor, targets: &[u32], device: &Device) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, &Tensor::new(targets, device)?)?)
}
