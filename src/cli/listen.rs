use super::speak::SpeakArgs;
use super::ModelArgs;
use anyhow::Result;
use clap::{Args, ValueEnum};
use kioku::assistant::Mode;
use kioku::audio::VadConfig;
use kioku::generation::SamplingOptions;
use kioku::listen::{listen, AudioSource, Detector, Endpointing, Event, ListenOptions, Pace, WavSource};
use kioku::tts::Talker;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ListenArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    speak: SpeakArgs,
    /// cascade: transcribe then answer; e2e: audio straight into the LLM
    /// (needs a projector). Cascade stays the default until the projector
    /// reaches its accuracy target (docs/PROJECTOR.md, "Status").
    #[arg(long, value_parser = super::one_of(&Mode::ALL, Mode::as_str), default_value = "cascade")]
    mode: Mode,
    /// Listen to a WAV file, at real-time pace, instead of the microphone.
    #[arg(long, value_name = "FILE.wav")]
    input: Option<PathBuf>,
    /// With --input: read the file as fast as possible.
    #[arg(long, requires = "input")]
    fast: bool,
    /// The microphone to use, by name (see `kioku devices`). Default: the system's default input.
    #[arg(long, value_name = "NAME", conflicts_with = "input")]
    input_device: Option<String>,
    /// One JSON object per answered utterance: start_s, end_s, transcript, answer, latency_ms
    /// (end of speech → first answer token), and with --speak or --speak-to first_audio_ms (end of
    /// speech → first spoken sample). Speech over a spoken answer stops it and adds a line
    /// {"barge_in": {"onset_s", "stopped_s"}} (stream times).
    #[arg(long)]
    json: bool,
    /// Push to talk: Enter starts and stops a question, instead of voice detection.
    #[arg(long)]
    ptt: bool,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// What detects speech: silero (the model file's Silero VAD) or energy (loudness and voicing).
    /// Default: silero when the model file has it.
    #[arg(long, value_enum, value_name = "DETECTOR")]
    vad: Option<VadChoice>,
    /// Silero: speech probability (0 to 1) at which audio counts as speech; speech continues down
    /// to 0.15 below it.
    #[arg(long, default_value_t = VadConfig::default().threshold)]
    vad_threshold: f32,
    /// Speech needed before an utterance starts (ms). Default: 96 (silero), 120 (energy).
    #[arg(long, value_name = "MS", alias = "min-speech-ms")]
    vad_min_speech_duration_ms: Option<u32>,
    /// Silence that ends an utterance (ms). Default: 400 (silero), 700 (energy).
    #[arg(long, value_name = "MS", alias = "hangover-ms")]
    vad_min_silence_duration_ms: Option<u32>,
    /// Silence after which answering starts, shown only if the silence lasts the whole
    /// --vad-min-silence-duration-ms or the words end the turn (ms; 0: wait for the end). Default: 150
    /// (silero), 0 (energy).
    #[arg(long, value_name = "MS")]
    early_answer_ms: Option<u32>,
    /// Silence that ends a question whose words the LLM reads as a finished turn, before the whole
    /// --vad-min-silence-duration-ms has passed (ms; 0: off). Needs --early-answer-ms below it and
    /// cascade mode. Default: 200 (silero), 0 (energy).
    #[arg(long, value_name = "MS")]
    turn_end_ms: Option<u32>,
    /// How likely (0 to 1) the LLM must find it that the words so far end the user's turn.
    #[arg(long, value_name = "P", default_value_t = VadConfig::default().turn_end_probability)]
    turn_end_probability: f32,
    /// Audio kept from before the detected start of speech (ms).
    #[arg(long, value_name = "MS", alias = "pre-roll-ms", default_value_t = VadConfig::default().pre_roll_ms)]
    vad_speech_pad_ms: u32,
    /// Longer speech is cut into utterances of at most this many seconds.
    #[arg(long, value_name = "SECONDS", alias = "max-utterance", default_value_t = VadConfig::default().max_utterance_s)]
    vad_max_speech_duration_s: f32,
    /// Energy detector: speech must be this many dB above the (adaptive) noise floor.
    #[arg(long, default_value_t = VadConfig::default().threshold_db)]
    threshold_db: f32,
    /// Energy detector: sounds quieter than this (dBFS) are never speech.
    #[arg(long, default_value_t = VadConfig::default().min_level_db, allow_negative_numbers = true)]
    min_level_db: f32,
    /// Energy detector: sounds less voiced than this (0 to 1) cannot start speech; lower it if soft
    /// voices are missed.
    #[arg(long, default_value_t = VadConfig::default().min_voicing)]
    min_voicing: f32,
}

#[derive(Clone, Copy, ValueEnum)]
enum VadChoice {
    Silero,
    Energy,
}

impl ListenArgs {
    /// The endpointer's settings for `detector`: its defaults, overridden by the flags given.
    fn vad_config(&self, detector: Detector) -> VadConfig {
        let defaults = detector.default_config();
        VadConfig {
            threshold: self.vad_threshold,
            threshold_db: self.threshold_db,
            min_level_db: self.min_level_db,
            min_voicing: self.min_voicing,
            min_speech_ms: self.vad_min_speech_duration_ms.unwrap_or(defaults.min_speech_ms),
            pre_roll_ms: self.vad_speech_pad_ms,
            hangover_ms: self.vad_min_silence_duration_ms.unwrap_or(defaults.hangover_ms),
            pause_ms: self.early_answer_ms.unwrap_or(defaults.pause_ms),
            turn_end_ms: self.turn_end_ms.unwrap_or(defaults.turn_end_ms),
            turn_end_probability: self.turn_end_probability,
            max_utterance_s: self.vad_max_speech_duration_s,
        }
    }
}

pub fn run(args: &ListenArgs) -> Result<()> {
    // Open the source before loading the model, so that a missing microphone is reported at once.
    let mut source = open_source(args)?;
    let assistant = args.model.load()?;
    let endpointing = if args.ptt {
        Endpointing::PushToTalk { talking: enter_toggles(), max_utterance_s: args.vad_max_speech_duration_s }
    } else {
        let detector = match args.vad {
            Some(VadChoice::Silero) => Detector::Silero,
            Some(VadChoice::Energy) => Detector::Energy,
            None => Detector::best_for(&assistant),
        };
        Endpointing::Voice(args.vad_config(detector), detector)
    };
    // The settings depend on the detector, which depends on the model: checked once it is known.
    endpointing.check()?;
    let mode = args.mode;
    let sampling = SamplingOptions { max_tokens: args.max_tokens, ..SamplingOptions::default() };
    let mut talker = args.speak.talker()?;
    let mut terminal = Terminal::new(args.json, args.ptt);
    let options = ListenOptions { mode, sampling, endpointing };
    let result = listen(&assistant, source.as_mut(), &options, talker.as_mut(), |event| terminal.show(event));
    terminal.clear_meter();
    let spoken = talker.map_or(Ok(()), Talker::finish);
    result.and(spoken)
}

fn open_source(args: &ListenArgs) -> Result<Box<dyn AudioSource>> {
    if let Some(path) = &args.input {
        let pace = if args.fast { Pace::AsFastAsPossible } else { Pace::RealTime };
        return Ok(Box::new(WavSource::open(path, pace)?));
    }
    open_microphone(args.input_device.as_deref())
}

#[cfg(feature = "mic")]
fn open_microphone(name: Option<&str>) -> Result<Box<dyn AudioSource>> {
    Ok(Box::new(kioku::audio::capture::Microphone::open(name)?))
}

#[cfg(not(feature = "mic"))]
fn open_microphone(_: Option<&str>) -> Result<Box<dyn AudioSource>> {
    anyhow::bail!("no microphone support in this build (the `mic` feature is off); use --input FILE.wav")
}

/// A flag that each Enter on stdin flips; an unreadable or closed stdin leaves it off.
fn enter_toggles() -> Arc<AtomicBool> {
    let talking = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&talking);
    std::thread::spawn(move || {
        for _ in std::io::stdin().lines().map_while(Result::ok) {
            flag.fetch_xor(true, Ordering::Relaxed);
        }
    });
    talking
}

/// Prints answers (stdout), and on a terminal draws a level meter (stderr).
struct Terminal {
    json: bool,
    ptt: bool,
    /// Draw the meter: stderr is a terminal and stdout is not JSON.
    meter: bool,
    meter_drawn: Option<Instant>,
    answering: bool,
}

const METER_PERIOD: Duration = Duration::from_millis(100);

impl Terminal {
    fn new(json: bool, ptt: bool) -> Self {
        let on_terminal = std::io::stderr().is_terminal();
        if on_terminal && ptt {
            eprintln!("Press Enter to start a question and Enter again to end it.");
        }
        Self { json, ptt, meter: on_terminal && !json, meter_drawn: None, answering: false }
    }

    fn show(&mut self, event: Event<'_>) {
        match event {
            Event::Level { level_db, speaking } => self.draw_meter(level_db, speaking),
            Event::Dropped(total) => {
                self.clear_meter();
                eprintln!("warning: the pipeline fell behind; {total} input samples dropped so far");
            }
            Event::Answering { .. } => {
                self.clear_meter();
                self.answering = true;
            }
            Event::AnswerText(text) => {
                if !self.json {
                    print!("{text}");
                    let _ = std::io::stdout().flush();
                }
            }
            Event::Answered(reply) => {
                self.answering = false;
                if self.json {
                    println!("{}", serde_json::to_string(reply).expect("a reply serialises"));
                } else {
                    println!();
                    let heard = reply.transcript.as_deref().map(|t| format!(" heard \"{t}\";")).unwrap_or_default();
                    let spoken =
                        reply.first_audio_ms.map(|ms| format!(", first sound after {ms:.0} ms")).unwrap_or_default();
                    eprintln!(
                        "[{}]{heard} first token after {:.0} ms{spoken}",
                        span(reply.start_s, reply.end_s),
                        reply.latency_ms
                    );
                }
            }
            Event::Failed { start_s, end_s, error } => {
                self.answering = false;
                self.clear_meter();
                eprintln!("[{}] skipped: {error:#}", span(start_s, end_s));
            }
            Event::BargeIn(barge_in) => {
                self.clear_meter();
                if self.json {
                    println!("{}", serde_json::json!({ "barge_in": barge_in }));
                } else {
                    let after_ms = (barge_in.stopped_s - barge_in.onset_s) * 1e3;
                    eprintln!(
                        "\n[{:.2} s] you spoke over the answer: stopped after {after_ms:.0} ms",
                        barge_in.onset_s
                    );
                }
            }
            Event::SpeechLost(error) => eprintln!("warning: {error:#}; answers are printed only from now on"),
        }
    }

    fn draw_meter(&mut self, level_db: f32, speaking: bool) {
        if !self.meter || self.answering || self.meter_drawn.is_some_and(|t| t.elapsed() < METER_PERIOD) {
            return;
        }
        const WIDTH: usize = 24;
        let filled = (((level_db + 60.0) / 60.0).clamp(0.0, 1.0) * WIDTH as f32) as usize;
        let state = match (speaking, self.ptt) {
            (true, _) => "hearing you… ",
            (false, true) => "Enter to talk",
            (false, false) => "listening…   ",
        };
        eprint!("\r\x1b[2K{state} [{}{}] {level_db:>4.0} dB", "#".repeat(filled), " ".repeat(WIDTH - filled));
        self.meter_drawn = Some(Instant::now());
    }

    fn clear_meter(&mut self) {
        if self.meter_drawn.take().is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

fn span(start_s: f64, end_s: f64) -> String {
    format!("{start_s:.2}–{end_s:.2} s")
}
