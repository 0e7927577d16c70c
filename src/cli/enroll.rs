use super::adapt::{run_adaptation, TrainingArgs};
use anyhow::Result;
use clap::Args;
use kioku::adapt::enroll::{prompts, recording_path, write_transcripts};
use std::path::PathBuf;

#[derive(Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    training: TrainingArgs,
    /// Adapter directory to write (PEFT layout).
    #[arg(long, short)]
    out: PathBuf,
    /// Use recordings already made: DIR/1.wav … DIR/N.wav, one per prompt
    /// (`--sentences N --list-prompts` shows them). Default: record from the microphone.
    #[arg(long)]
    input_dir: Option<PathBuf>,
    /// How many sentences to read.
    #[arg(long, default_value_t = 24)]
    sentences: usize,
    /// Print the prompts, numbered, and stop.
    #[arg(long)]
    list_prompts: bool,
    /// The microphone to record from, by name (see `kioku devices`).
    #[arg(long)]
    input_device: Option<String>,
}

pub fn run(args: &EnrollArgs) -> Result<()> {
    let prompts = prompts(args.sentences)?;
    if args.list_prompts {
        for (i, text) in prompts.iter().enumerate() {
            println!("{}\t{text}", i + 1);
        }
        return Ok(());
    }
    let dir = match &args.input_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = PathBuf::from(format!("{}-recordings", args.out.display()));
            record(&prompts, &dir, args.input_device.as_deref())?;
            dir
        }
    };
    write_transcripts(&dir, &prompts)?;
    run_adaptation(&args.training, &dir, &args.out)
}

/// Records each prompt from the microphone: Enter starts, Enter stops.
#[cfg(feature = "mic")]
fn record(prompts: &[String], dir: &std::path::Path, device: Option<&str>) -> Result<()> {
    use kioku::audio::{capture::Microphone, resample_to_16k, write_wav_16k, Audio};
    use std::sync::mpsc::{channel, TryRecvError};
    let mut mic = Microphone::open(device).map_err(|e| no_microphone(&e))?;
    let (enter, pressed) = channel();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lines().map_while(Result::ok) {
            if enter.send(()).is_err() {
                break;
            }
        }
    });
    let wait_for_enter =
        || pressed.recv().map_err(|_| anyhow::anyhow!("stdin closed before every sentence was recorded"));
    std::fs::create_dir_all(dir)?;
    for (i, text) in prompts.iter().enumerate() {
        eprintln!("\n[{}/{}] press Enter, read aloud, press Enter again:\n    {text}", i + 1, prompts.len());
        wait_for_enter()?;
        eprintln!("    recording…");
        let mut samples = Vec::new();
        // Drop what arrived while the prompt was on screen.
        while mic.read()?.1.elapsed().as_millis() > 50 {}
        loop {
            samples.extend(mic.read()?.0);
            match pressed.try_recv() {
                Ok(()) => break,
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => anyhow::bail!("stdin closed while recording"),
            }
        }
        let audio = resample_to_16k(&Audio { samples, sample_rate: mic.sample_rate() })?;
        write_wav_16k(&recording_path(dir, i + 1), &audio)?;
    }
    eprintln!("recordings saved in {}", dir.display());
    Ok(())
}

#[cfg(not(feature = "mic"))]
fn record(_: &[String], _: &std::path::Path, _: Option<&str>) -> Result<()> {
    Err(no_microphone(&"this build has no microphone support (the `mic` feature is off)"))
}

fn no_microphone(why: &dyn std::fmt::Display) -> anyhow::Error {
    let why = why.to_string();
    let why = why.split("; use --input").next().unwrap_or(&why).to_string();
    anyhow::anyhow!("{why}; record the prompts as 1.wav … N.wav (see --list-prompts) and pass --input-dir DIR")
}
