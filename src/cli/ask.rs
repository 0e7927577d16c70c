use super::speak::SpeakArgs;
use super::ModelArgs;
use anyhow::{bail, Result};
use clap::Args;
use kioku::assistant::{load_audio_16k, Mode, Question, Request};
use kioku::generation::SamplingOptions;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct AskArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    speak: SpeakArgs,
    /// cascade: transcribe then answer; e2e: audio straight into the LLM
    /// (needs a projector). Cascade stays the default until the projector
    /// reaches its accuracy target (docs/PROJECTOR.md, "Status").
    #[arg(long, value_parser = super::one_of(&Mode::ALL, Mode::as_str), default_value = "cascade")]
    mode: Mode,
    /// Print one JSON object with transcript, answer and timings.
    #[arg(long)]
    json: bool,
    /// A typed question instead of a WAV file.
    #[arg(long, conflicts_with = "file")]
    text: Option<String>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold (with --temperature > 0).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 299_792_458)]
    seed: u64,
    /// The spoken question (WAV).
    #[arg(required_unless_present = "text")]
    file: Option<PathBuf>,
}

pub fn run(args: &AskArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.top_p) || args.top_p == 0.0 {
        bail!("--top-p must be in (0, 1], got {}", args.top_p);
    }
    if args.temperature < 0.0 {
        bail!("--temperature must be 0 or more, got {}", args.temperature);
    }
    let sampling = SamplingOptions {
        temperature: args.temperature,
        top_p: args.top_p,
        max_tokens: args.max_tokens,
        seed: args.seed,
        stop: Vec::new(),
    };
    let samples = args.file.as_deref().map(load_audio_16k).transpose()?;
    let assistant = args.model.load()?;
    let mut talker = args.speak.talker()?;
    let streaming = !args.json;
    let mut first_text_at = None;
    let mut print = |text: &str| {
        first_text_at.get_or_insert_with(Instant::now);
        if let Some(talker) = &mut talker {
            talker.say(text);
        }
        if streaming {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    };
    let question = match (&args.text, &samples) {
        (Some(question), _) => Question::Text(question),
        (None, Some(samples)) => Question::Audio { samples, mode: args.mode, instruction: None },
        (None, None) => unreachable!("clap requires a file or --text"),
    };
    let answer = assistant.respond(&Request::new(question, sampling), &mut print)?;
    // End of the question → first spoken sample: the first token's latency, plus the time from
    // that token to its clause's audio.
    let mut first_audio_ms = None;
    if let Some(talker) = &mut talker {
        if let (Some(audio_at), Some(text_at)) = (talker.end_answer()?, first_text_at) {
            first_audio_ms =
                Some(answer.timings_ms.first_token + audio_at.saturating_duration_since(text_at).as_secs_f64() * 1e3);
        }
    }
    if args.json {
        let mut out = json!({
            "transcript": answer.transcript.as_deref().or(args.text.as_deref()),
            "answer": answer.answer,
            "timings_ms": answer.timings_ms,
            "tokens_per_s": answer.tokens_per_s,
            "answer_tokens": answer.answer_tokens,
        });
        if let Some(file) = &args.file {
            out["file"] = json!(file);
        }
        if let Some(ms) = first_audio_ms {
            out["first_audio_ms"] = json!(ms);
        }
        println!("{out}");
    } else {
        println!();
    }
    talker.map_or(Ok(()), |talker| talker.finish())
}
