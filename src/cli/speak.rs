//! `--speak` and `--speak-to FILE.wav`, shared by `ask` and `listen`.

use anyhow::Result;
use clap::Args;
use kioku::tts::{AudioSink, Espeak, Talker, WavFileSink};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SpeakArgs {
    /// Say the answer aloud (espeak-ng) through the default sound output, starting at its first
    /// clause while the rest is still being written.
    #[arg(long)]
    speak: bool,
    /// Write the spoken answer to this WAV file instead of playing it.
    #[arg(long, value_name = "FILE.wav", conflicts_with = "speak")]
    speak_to: Option<PathBuf>,
    /// The output device to speak through, by name (see `kioku devices`). Default: the system's.
    #[arg(long, value_name = "NAME", requires = "speak")]
    output_device: Option<String>,
    /// espeak-ng voice for spoken answers (`espeak-ng --voices` lists them).
    #[arg(long, value_name = "VOICE", default_value = "en-us")]
    voice: String,
}

impl SpeakArgs {
    /// The talker the flags ask for. Without a sound output, says so in one line and returns None:
    /// the answer is still printed.
    pub fn talker(&self) -> Result<Option<Talker>> {
        let espeak = Espeak { voice: self.voice.clone(), ..Espeak::default() };
        if let Some(path) = &self.speak_to {
            let path = path.clone();
            return Talker::start(espeak, move || Ok(Box::new(WavFileSink::new(path)) as Box<dyn AudioSink>)).map(Some);
        }
        if !self.speak {
            return Ok(None);
        }
        match Talker::start(espeak, open_player(self.output_device.clone())) {
            Ok(talker) => Ok(Some(talker)),
            Err(e) => {
                eprintln!("warning: {e:#}");
                Ok(None)
            }
        }
    }
}

#[cfg(feature = "mic")]
fn open_player(name: Option<String>) -> impl FnOnce() -> Result<Box<dyn AudioSink>> + Send + 'static {
    move || Ok(Box::new(kioku::audio::playback::Player::open(name.as_deref())?) as Box<dyn AudioSink>)
}

#[cfg(not(feature = "mic"))]
fn open_player(_: Option<String>) -> impl FnOnce() -> Result<Box<dyn AudioSink>> + Send + 'static {
    || anyhow::bail!("no audio output in this build (the `mic` feature is off); the answer is printed only")
}
