//! Answers spoken aloud: the streamed answer is cut into clauses, each clause is spoken by
//! espeak-ng as soon as it is complete, and the audio goes to a sink (the sound card, or a file).
//!
//! espeak-ng runs as a command, one process per clause, not through its C library: the command is
//! what `make demo` installs, it keeps kioku's build free of a C dependency and bindings, and one
//! clause takes about 25 ms to synthesise (start-up included), far less than it takes to say. The
//! next clause's process is started ahead, so only the synthesis itself is waited for.

use std::io::Cursor;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::audio::echo::{Playback, SinkStopper};
use crate::audio::{read_wav_from, resample, write_wav, Audio};

/// The speech synthesiser.
#[derive(Debug, Clone)]
pub struct Espeak {
    /// An espeak-ng voice (`espeak-ng --voices` lists them), e.g. `en-us`.
    pub voice: String,
    pub words_per_minute: u32,
}

impl Default for Espeak {
    fn default() -> Self {
        Self { voice: "en-us".into(), words_per_minute: 175 }
    }
}

impl Espeak {
    /// `text` spoken, at espeak-ng's own rate (22 050 Hz).
    pub fn synthesize(&self, text: &str) -> Result<Audio> {
        Self::speak_with(self.start()?, text)
    }

    /// An espeak-ng process with its voice loaded, waiting for its text on stdin.
    fn start(&self) -> Result<Child> {
        Command::new("espeak-ng")
            .args(["--stdout", "-v", &self.voice, "-s", &self.words_per_minute.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow!("espeak-ng is not installed (`make demo` installs it)"),
                _ => anyhow!("cannot run espeak-ng: {e}"),
            })
    }

    /// Gives a started process its text and reads back the speech.
    fn speak_with(mut process: Child, text: &str) -> Result<Audio> {
        let mut stdin = process.stdin.take().context("espeak-ng's input was not opened")?;
        let text = text.to_owned();
        // Written from its own thread: a text longer than the pipe holds would otherwise wait on
        // espeak-ng, which waits for us to read its output.
        let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let out = process.wait_with_output().context("cannot read espeak-ng's output")?;
        // espeak-ng's own complaint first: a process that refused its voice closed its input too.
        if !out.status.success() {
            bail!("espeak-ng failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        writer.join().map_err(|_| anyhow!("writing to espeak-ng failed"))?.context("cannot write to espeak-ng")?;
        read_wav_from(Cursor::new(with_sizes(out.stdout)?), "espeak-ng's output")
    }
}

/// espeak-ng with the next clause's process already started. Starting one and loading its voice
/// is most of a clause's 20–30 ms; a process that is waiting answers in 4–7 ms (the capital of
/// France sentence, on this 2-core machine), which is that much sooner to the first sound.
struct WarmEspeak {
    espeak: Espeak,
    next: Option<Child>,
}

impl WarmEspeak {
    fn new(espeak: Espeak) -> Self {
        let next = espeak.start().ok();
        Self { espeak, next }
    }

    fn synthesize(&mut self, text: &str) -> Result<Audio> {
        let process = match self.next.take() {
            Some(process) => process,
            None => self.espeak.start()?,
        };
        let audio = Espeak::speak_with(process, text);
        // A process that cannot start now is tried again, with its error, at the next clause.
        self.next = self.espeak.start().ok();
        audio
    }
}

impl Drop for WarmEspeak {
    fn drop(&mut self) {
        if let Some(mut process) = self.next.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// espeak-ng streams its WAV to stdout before it knows its length, so the RIFF and data sizes in
/// its 44-byte header are placeholders; they are filled in from the bytes received.
fn with_sizes(mut wav: Vec<u8>) -> Result<Vec<u8>> {
    if wav.len() < 44 || &wav[36..40] != b"data" {
        bail!("espeak-ng's output is not the WAV it writes");
    }
    let len = wav.len() as u32;
    wav[4..8].copy_from_slice(&(len - 8).to_le_bytes());
    wav[40..44].copy_from_slice(&(len - 44).to_le_bytes());
    Ok(wav)
}

/// Cuts streamed text into clauses worth speaking on their own: at the end of a sentence, and at a
/// comma, semicolon or colon once a few words have gathered.
#[derive(Default)]
pub struct ClauseSplitter {
    pending: String,
}

/// A clause shorter than this (characters) waits for more at a comma: "Yes," alone sounds clipped.
const MIN_CLAUSE_AT_COMMA: usize = 20;

impl ClauseSplitter {
    /// Takes more text; returns the clauses it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        let mut done = Vec::new();
        for c in text.chars() {
            // A boundary is the punctuation followed by white space.
            if c.is_whitespace() {
                let last = self.pending.trim_end().chars().last();
                let ends_sentence = matches!(last, Some('.' | '!' | '?' | '\n'));
                let ends_clause =
                    matches!(last, Some(',' | ';' | ':')) && self.pending.trim().len() >= MIN_CLAUSE_AT_COMMA;
                if (ends_sentence || ends_clause || c == '\n') && !self.pending.trim().is_empty() {
                    done.push(std::mem::take(&mut self.pending).trim().to_string());
                    continue;
                }
            }
            self.pending.push(c);
        }
        done
    }

    /// The text left over at the end of the answer.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }
}

/// Where spoken audio goes. Made and used on the speech thread (a cpal stream cannot move between
/// threads).
pub trait AudioSink {
    fn play(&mut self, audio: &Audio) -> Result<()>;
    /// What drops the audio queued and not yet played, from any thread (a barge-in).
    fn stopper(&self) -> SinkStopper;
    /// Everything has been given: write it out, or wait until it has been heard.
    fn finish(&mut self) -> Result<()>;
}

/// Collects the speech and writes it to a WAV file at the end, atomically. It stands for a speaker
/// that plays in real time: a barge-in drops the part that would not have been heard yet.
pub struct WavFileSink {
    path: PathBuf,
    audio: Arc<Mutex<Option<Audio>>>,
}

impl WavFileSink {
    pub fn new(path: PathBuf) -> Self {
        Self { path, audio: Arc::default() }
    }
}

impl AudioSink for WavFileSink {
    fn play(&mut self, audio: &Audio) -> Result<()> {
        let mut all = self.audio.lock().unwrap_or_else(PoisonError::into_inner);
        let all = all.get_or_insert_with(|| Audio { samples: Vec::new(), sample_rate: audio.sample_rate });
        all.samples.extend(resample(audio, all.sample_rate)?);
        Ok(())
    }

    fn stopper(&self) -> SinkStopper {
        let audio = Arc::clone(&self.audio);
        Box::new(move |unplayed: Duration| {
            if let Some(all) = audio.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                let unplayed = (unplayed.as_secs_f64() * f64::from(all.sample_rate)).round() as usize;
                all.samples.truncate(all.samples.len().saturating_sub(unplayed));
            }
        })
    }

    fn finish(&mut self) -> Result<()> {
        let mut audio = self.audio.lock().unwrap_or_else(PoisonError::into_inner);
        // An answer with nothing to say still leaves a (silent) file, so the caller finds one.
        let audio = audio.get_or_insert_with(|| Audio { samples: vec![0.0; 160], sample_rate: 16_000 });
        write_wav(&self.path, audio)
            .with_context(|| format!("cannot write the spoken answer to {}", self.path.display()))
    }
}

#[cfg(feature = "mic")]
impl AudioSink for crate::audio::playback::Player {
    fn play(&mut self, audio: &Audio) -> Result<()> {
        crate::audio::playback::Player::play(self, audio)
    }

    fn stopper(&self) -> SinkStopper {
        let stop = crate::audio::playback::Player::stopper(self);
        Box::new(move |_| stop())
    }

    fn finish(&mut self) -> Result<()> {
        self.drain(Duration::from_secs(120));
        Ok(())
    }
}

enum Job {
    /// A clause of the answer begun at this barge-in epoch (see [`Playback::epoch`]).
    Say(String, u64),
    /// The answer is complete: report when its first audio went to the sink.
    EndOfAnswer,
}

/// Speaks answers as they stream, on a thread of its own so generation never waits for speech.
pub struct Talker {
    splitter: ClauseSplitter,
    playback: Arc<Playback>,
    /// The barge-in epoch the current answer began in: a later barge-in silences it.
    epoch: u64,
    jobs: Sender<Job>,
    reports: Receiver<Result<Option<Instant>>>,
    worker: JoinHandle<Result<()>>,
}

impl Talker {
    /// Starts the speech thread, which opens its sink with `open_sink`; fails if that does.
    pub fn start(
        espeak: Espeak,
        open_sink: impl FnOnce() -> Result<Box<dyn AudioSink>> + Send + 'static,
    ) -> Result<Self> {
        let (jobs, queue) = channel::<Job>();
        let (report, reports) = channel();
        let playback = Arc::new(Playback::new());
        let timeline = Arc::clone(&playback);
        let worker = std::thread::spawn(move || {
            let mut espeak = WarmEspeak::new(espeak);
            let mut sink = match open_sink() {
                Ok(sink) => {
                    timeline.set_sink_stopper(sink.stopper());
                    let _ = report.send(Ok(None));
                    sink
                }
                Err(e) => {
                    let _ = report.send(Err(e));
                    return Ok(());
                }
            };
            let mut first_audio = None;
            let mut failed: Option<anyhow::Error> = None;
            for job in queue {
                match job {
                    // An answer cut by a barge-in is not synthesised any further.
                    Job::Say(clause, epoch) if failed.is_none() && epoch == timeline.epoch() => {
                        match espeak
                            .synthesize(&clause)
                            .and_then(|audio| timeline.play(epoch, &audio, |audio| sink.play(audio)))
                        {
                            Ok(true) => {
                                first_audio.get_or_insert_with(Instant::now);
                            }
                            Ok(false) => {}
                            Err(e) => failed = Some(e),
                        }
                    }
                    Job::Say(..) => {}
                    Job::EndOfAnswer => {
                        let _ = report.send(failed.take().map_or(Ok(first_audio.take()), Err));
                    }
                }
            }
            sink.finish()
        });
        reports.recv().map_err(|_| anyhow!("the speech thread stopped"))??;
        Ok(Self { splitter: ClauseSplitter::default(), epoch: playback.epoch(), playback, jobs, reports, worker })
    }

    /// What is being played, for echo cancellation, and where a barge-in cuts it.
    pub fn playback(&self) -> &Arc<Playback> {
        &self.playback
    }

    fn send(&self, job: Job) {
        // The worker only stops when `finish` drops the sender, so a send cannot fail before.
        let _ = self.jobs.send(job);
    }

    /// A new answer begins (before its text is worked out): a barge-in from now on silences it.
    pub fn begin_answer(&mut self) {
        self.epoch = self.playback.epoch();
    }

    /// More answer text: complete clauses start being spoken at once.
    pub fn say(&mut self, text: &str) {
        for clause in self.splitter.push(text) {
            self.send(Job::Say(clause, self.epoch));
        }
    }

    /// Ends the current answer; waits until all of it went to the sink and returns when its first
    /// audio did (None if there was nothing to say, or a barge-in cut it before it began).
    pub fn end_answer(&mut self) -> Result<Option<Instant>> {
        if let Some(rest) = self.splitter.finish() {
            self.send(Job::Say(rest, self.epoch));
        }
        self.send(Job::EndOfAnswer);
        let first_audio = self.reports.recv().map_err(|_| anyhow!("the speech thread stopped"))?;
        self.begin_answer();
        first_audio
    }

    /// Ends speaking: writes the file, or waits until the sound card has played everything.
    pub fn finish(self) -> Result<()> {
        let Self { jobs, worker, .. } = self;
        drop(jobs);
        worker.join().unwrap_or_else(|_| bail!("the speech thread panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clauses of `text` streamed in pieces of `piece` characters.
    fn clauses(text: &str, piece: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut splitter = ClauseSplitter::default();
        let mut out: Vec<String> =
            chars.chunks(piece).flat_map(|p| splitter.push(&p.iter().collect::<String>())).collect();
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn streamed_text_is_cut_at_sentences_and_long_clauses() {
        let text = "Yes, it is. The capital of France is Paris, a city on the Seine; it has 2.1 million people! Why?";
        let expected = [
            "Yes, it is.",
            "The capital of France is Paris,",
            "a city on the Seine;",
            "it has 2.1 million people!",
            "Why?",
        ];
        for piece in [1, 3, 7, 1000] {
            assert_eq!(clauses(text, piece), expected, "pieces of {piece}");
        }
        assert!(clauses("  ", 1).is_empty());
    }

    #[test]
    fn espeak_streams_are_given_their_sizes() {
        let mut wav = b"RIFF\xff\xff\xff\x7fWAVEfmt ".to_vec();
        wav.extend([16, 0, 0, 0, 1, 0, 1, 0, 0x22, 0x56, 0, 0, 0x44, 0xac, 0, 0, 2, 0, 16, 0]);
        wav.extend(b"data\xff\xff\xff\x7f");
        wav.extend([0u8; 8]);
        let audio = read_wav_from(Cursor::new(with_sizes(wav).unwrap()), "test").unwrap();
        assert_eq!((audio.sample_rate, audio.samples.len()), (22_050, 4));
        assert!(with_sizes(b"RIFF".to_vec()).is_err());
    }
}
