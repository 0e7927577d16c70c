use super::ModelArgs;
use anyhow::{Context, Result};
use clap::Args;
use kioku::assistant::load_audio_16k;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct TranscribeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// One JSON object per line: {"file", "text", "timings_ms"}.
    #[arg(long)]
    json: bool,
    /// Text that conditions the transcript: names and words to spell as
    /// given, or a style (lower case, no punctuation) to follow.
    #[arg(long)]
    prompt: Option<String>,
    /// WAV files (any sample rate, bit depth and channel count).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(args: &TranscribeArgs) -> Result<()> {
    // Check every input before the (slower) model load, so a typo fails fast.
    let clips = args.files.iter().map(|f| load_audio_16k(f).map(|s| (f, s))).collect::<Result<Vec<_>, _>>()?;
    let assistant = args.model.load()?;
    for (file, samples) in clips {
        let (text, timings) = assistant
            .transcribe_segments(&samples, &[], args.prompt.as_deref(), &mut |_| {})
            .with_context(|| format!("cannot transcribe {}", file.display()))?;
        if args.json {
            println!("{}", json!({"file": file, "text": text, "timings_ms": timings}));
        } else if args.files.len() > 1 {
            println!("{}: {text}", file.display());
        } else {
            println!("{text}");
        }
    }
    Ok(())
}
