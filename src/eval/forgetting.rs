//! The forgetting report: every arm (a model file plus adapters at scales) is
//! scored on the same [`EvalSets`], and compared with the first arm, the
//! reference. What adaptation should gain is the new speaker's WER; what it
//! must not lose is WER on earlier voices and real speech, and the LLM's text
//! answers (agreement with the reference arm's answers, and gold accuracy).
//!
//! The arm list is the whole interface: a study adapts with several
//! strategies, then passes one arm per result (with its training cost in
//! [`Cost`]) and gets one report.

use super::metrics::{answers_agree, contains_reference, wer, WerTally};
use super::sets::{EvalSets, Question};
use crate::assistant::{load_audio_16k, Assistant, Mode};
use crate::corpus::TranscribedClip;
use crate::generation::SamplingOptions;
use crate::model::peft::AdapterSpec;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What producing an arm cost, as its maker measured it; shown as columns when given.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cost {
    pub train_seconds: Option<f64>,
    /// Size on disk of what the arm adds (adapter or merged model), in MB.
    pub megabytes: Option<f64>,
}

/// One row of the report: a model file with adapters applied at their scales.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    pub name: String,
    pub model: PathBuf,
    pub adapters: Vec<AdapterSpec>,
    pub cost: Cost,
}

impl Arm {
    pub fn new(name: &str, model: &Path, adapters: Vec<AdapterSpec>) -> Self {
        Self { name: name.to_string(), model: model.to_path_buf(), adapters, cost: Cost::default() }
    }

    /// `NAME=MODEL[+ADAPTER[:SCALE]]…`; an empty MODEL means `default_model`. A '+' inside a
    /// path that exists is part of it.
    pub fn parse(text: &str, default_model: &Path) -> Result<Self> {
        let usage = || format!("arm `{text}`: expected NAME=MODEL[+ADAPTER[:SCALE]]…");
        let (name, rest) = text.split_once('=').with_context(usage)?;
        let parts = split_on_plus_outside_paths(rest);
        let (model, adapters) = parts.split_first().with_context(usage)?;
        if name.trim().is_empty() || adapters.iter().any(String::is_empty) || rest.is_empty() {
            bail!("{}", usage());
        }
        let model = if model.is_empty() { default_model } else { Path::new(model) };
        let adapters = adapters.iter().map(|p| p.parse().unwrap_or_else(|never| match never {})).collect();
        Ok(Self::new(name.trim(), model, adapters))
    }
}

/// Splits on '+', except where the pieces joined back name an existing path (a scale suffix
/// aside): voice names such as `en-gb-scotland+klatt3` end up in directory names.
fn split_on_plus_outside_paths(text: &str) -> Vec<String> {
    let pieces: Vec<&str> = text.split('+').collect();
    let exists = |joined: &str| joined.parse::<AdapterSpec>().is_ok_and(|spec| spec.path.exists());
    let mut parts = Vec::new();
    let mut start = 0;
    while start < pieces.len() {
        // The longest run of pieces from `start` that names a path; else the one piece.
        let end =
            (start + 2..=pieces.len()).rev().find(|&end| exists(&pieces[start..end].join("+"))).unwrap_or(start + 1);
        parts.push(pieces[start..end].join("+"));
        start = end;
    }
    parts
}

/// One column pair of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    NewSpeakerWer,
    EarlierSpeakersWer,
    RealSpeechWer,
    TextQaAgreement,
    TextQaGold,
    E2eQaAgreement,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::NewSpeakerWer,
        Metric::EarlierSpeakersWer,
        Metric::RealSpeechWer,
        Metric::TextQaAgreement,
        Metric::TextQaGold,
        Metric::E2eQaAgreement,
    ];

    /// Its name in JSON and SVG.
    pub fn key(self) -> &'static str {
        match self {
            Metric::NewSpeakerWer => "new_speaker_wer",
            Metric::EarlierSpeakersWer => "earlier_speakers_wer",
            Metric::RealSpeechWer => "real_speech_wer",
            Metric::TextQaAgreement => "text_qa_agreement",
            Metric::TextQaGold => "text_qa_gold",
            Metric::E2eQaAgreement => "e2e_qa_agreement",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::NewSpeakerWer => "new-speaker WER",
            Metric::EarlierSpeakersWer => "earlier-speakers WER",
            Metric::RealSpeechWer => "real-speech WER",
            Metric::TextQaAgreement => "text QA agreement",
            Metric::TextQaGold => "text QA gold",
            Metric::E2eQaAgreement => "e2e QA agreement",
        }
    }

    /// WERs are rates; QA scores are shares, shown in percent.
    pub fn is_wer(self) -> bool {
        matches!(self, Metric::NewSpeakerWer | Metric::EarlierSpeakersWer | Metric::RealSpeechWer)
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.key())
    }
}

/// One clip's transcript.
#[derive(Debug, Clone, Serialize)]
pub struct Transcribed {
    pub id: String,
    pub reference: String,
    pub hypothesis: String,
    pub wer: f64,
}

/// One question's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answered {
    pub id: String,
    pub question: String,
    pub answer: String,
    /// Whether it agrees with the reference arm's text answer.
    pub agrees: bool,
    /// Whether it contains the reference answer, when the question has one.
    pub gold: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ArmItems {
    pub new_speaker: Vec<Transcribed>,
    pub earlier_speakers: Vec<Transcribed>,
    pub real_speech: Vec<Transcribed>,
    pub text_qa: Vec<Answered>,
    pub e2e_qa: Vec<Answered>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmResult {
    pub arm: Arm,
    /// Seconds to load and score this arm.
    pub eval_seconds: f64,
    pub metrics: BTreeMap<Metric, f64>,
    /// Each metric minus the reference arm's.
    pub changes: BTreeMap<Metric, f64>,
    pub items: ArmItems,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sets: EvalSets,
    pub answer_tokens: usize,
    /// The reference arm first.
    pub arms: Vec<ArmResult>,
}

pub struct EvalOptions {
    pub device: Device,
    /// Longest answer, in tokens; agreement only looks at an answer's start.
    pub answer_tokens: usize,
}

/// Where the evaluation is, for a progress display.
pub enum Step<'a> {
    /// An arm starts; `items` of it are to be scored.
    Arm { index: usize, name: &'a str, items: usize },
    /// One item was scored.
    Item,
}

/// Scores every arm on `sets`; the first arm is the reference (usually the
/// base model): changes are measured against it, and its text answers, computed
/// once, are what the other arms' answers must agree with.
pub fn evaluate(arms: &[Arm], sets: &EvalSets, options: &EvalOptions, on_step: &mut dyn FnMut(Step)) -> Result<Report> {
    if arms.is_empty() {
        bail!("no arms to evaluate");
    }
    let sampling = SamplingOptions { max_tokens: options.answer_tokens, ..SamplingOptions::default() };
    let mut results: Vec<ArmResult> = Vec::new();
    for (index, arm) in arms.iter().enumerate() {
        let start = Instant::now();
        let assistant = Assistant::load_with_adapters(&arm.model, &options.device, &arm.adapters)
            .with_context(|| format!("arm {}", arm.name))?;
        on_step(Step::Arm { index, name: &arm.name, items: sets.items(assistant.has_projector()) });
        let mut scorer = Scorer { assistant: &assistant, sampling: &sampling, on_step: &mut *on_step };
        let base_answers = results.first().map(|base| &base.items.text_qa);
        let items = scorer.score(sets, base_answers).with_context(|| format!("arm {}", arm.name))?;
        let metrics = metrics_of(&items);
        let changes = match results.first() {
            Some(base) => metrics.iter().filter_map(|(m, v)| Some((*m, v - base.metrics.get(m)?))).collect(),
            None => BTreeMap::new(),
        };
        results.push(ArmResult {
            arm: arm.clone(),
            eval_seconds: start.elapsed().as_secs_f64(),
            metrics,
            changes,
            items,
        });
    }
    Ok(Report { sets: sets.clone(), answer_tokens: options.answer_tokens, arms: results })
}

struct Scorer<'a> {
    assistant: &'a Assistant,
    sampling: &'a SamplingOptions,
    on_step: &'a mut dyn FnMut(Step),
}

impl Scorer<'_> {
    /// `base_answers`: the reference arm's text answers, `None` when this is it.
    fn score(&mut self, sets: &EvalSets, base_answers: Option<&Vec<Answered>>) -> Result<ArmItems> {
        let new_speaker = self.transcribe_all(&sets.new_speaker)?;
        let earlier_speakers = self.transcribe_all(&sets.earlier_speakers)?;
        let real_speech = self.transcribe_all(&sets.real_speech)?;
        let mut text_qa = Vec::new();
        for (i, q) in sets.questions.iter().enumerate() {
            let answer = self.assistant.ask_text(&q.text, self.sampling, &mut |_| {})?.answer;
            let agrees = base_answers.is_none_or(|base| answers_agree(&answer, &base[i].answer));
            text_qa.push(answered(q, answer, agrees));
            (self.on_step)(Step::Item);
        }
        let mut e2e_qa = Vec::new();
        if self.assistant.has_projector() {
            let reference = base_answers.unwrap_or(&text_qa);
            for (q, text) in sets.questions.iter().zip(reference) {
                let Some(audio) = &q.audio else { continue };
                let samples = load_audio_16k(audio)?;
                let answer = self.assistant.ask_audio(&samples, Mode::E2e, self.sampling, &mut |_| {})?.answer;
                let agrees = answers_agree(&answer, &text.answer);
                e2e_qa.push(answered(q, answer, agrees));
                (self.on_step)(Step::Item);
            }
        }
        Ok(ArmItems { new_speaker, earlier_speakers, real_speech, text_qa, e2e_qa })
    }

    fn transcribe_all(&mut self, clips: &[TranscribedClip]) -> Result<Vec<Transcribed>> {
        let mut out = Vec::with_capacity(clips.len());
        for clip in clips {
            let samples = load_audio_16k(&clip.path).with_context(|| format!("clip {}", clip.id))?;
            let (hypothesis, _) = self.assistant.transcribe(&samples)?;
            out.push(Transcribed {
                id: clip.id.clone(),
                wer: wer(&clip.text, &hypothesis),
                reference: clip.text.clone(),
                hypothesis,
            });
            (self.on_step)(Step::Item);
        }
        Ok(out)
    }
}

fn answered(q: &Question, answer: String, agrees: bool) -> Answered {
    let gold = q.reference_answer.as_deref().map(|r| contains_reference(&answer, r));
    Answered { id: q.id.clone(), question: q.text.clone(), answer, agrees, gold }
}

/// Corpus-level WER of each speech set, the share of agreeing answers, and
/// gold accuracy over the questions that have a reference answer; a metric
/// whose set is empty is left out.
fn metrics_of(items: &ArmItems) -> BTreeMap<Metric, f64> {
    let wer_of = |set: &[Transcribed]| {
        let mut tally = WerTally::default();
        set.iter().for_each(|t| tally.add(&t.reference, &t.hypothesis));
        (!set.is_empty()).then(|| tally.rate())
    };
    let share =
        |hits: Vec<bool>| (!hits.is_empty()).then(|| hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64);
    [
        (Metric::NewSpeakerWer, wer_of(&items.new_speaker)),
        (Metric::EarlierSpeakersWer, wer_of(&items.earlier_speakers)),
        (Metric::RealSpeechWer, wer_of(&items.real_speech)),
        (Metric::TextQaAgreement, share(items.text_qa.iter().map(|a| a.agrees).collect())),
        (Metric::TextQaGold, share(items.text_qa.iter().filter_map(|a| a.gold).collect())),
        (Metric::E2eQaAgreement, share(items.e2e_qa.iter().map(|a| a.agrees).collect())),
    ]
    .into_iter()
    .filter_map(|(m, v)| Some((m, v?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_parse_model_and_scaled_adapters() {
        let base = Path::new("base.safetensors");
        let arm = Arm::parse("replay+γ=+runs/a:0.5+runs/b", base).unwrap();
        assert_eq!((arm.name.as_str(), arm.model.as_path()), ("replay+γ", base));
        let adapters: Vec<(&Path, f64)> = arm.adapters.iter().map(|a| (a.path.as_path(), a.scale)).collect();
        assert_eq!(adapters, [(Path::new("runs/a"), 0.5), (Path::new("runs/b"), 1.0)]);
        let merged = Arm::parse("merged=merged.safetensors", base).unwrap();
        assert_eq!((merged.model.as_path(), merged.adapters.len()), (Path::new("merged.safetensors"), 0));
        // A '+' in an existing path is part of it, also in the model's path and before a scale.
        let dir = tempfile::tempdir().unwrap();
        let (voice, model) = (dir.path().join("scotland+klatt3"), dir.path().join("a+b.safetensors"));
        std::fs::create_dir(&voice).unwrap();
        std::fs::write(&model, b"").unwrap();
        let arm = Arm::parse(&format!("v={}+{}:0.25+runs/c", model.display(), voice.display()), base).unwrap();
        assert_eq!(arm.model, model);
        let adapters: Vec<(&Path, f64)> = arm.adapters.iter().map(|a| (a.path.as_path(), a.scale)).collect();
        assert_eq!(adapters, [(voice.as_path(), 0.25), (Path::new("runs/c"), 1.0)]);
        for bad in ["no-equals", "=m.safetensors", "x=", "x=m++a", "x=m+"] {
            let e = Arm::parse(bad, base).unwrap_err().to_string();
            assert!(e.contains("expected NAME=MODEL[+ADAPTER[:SCALE]]"), "{bad}: {e}");
        }
    }
}
