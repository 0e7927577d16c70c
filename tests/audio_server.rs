//! The real audio path: kioku's cpal capture and playback through a PulseAudio server that the test
//! starts on its own socket, with two null sinks standing in for a microphone (`mic`, whose monitor
//! is the default source) and speakers (`spk`, the default sink). ALSA's `default` device, which
//! cpal opens, goes to PulseAudio through Debian's libasound2-plugins; `make test` installs
//! pulseaudio, pulseaudio-utils and libasound2-plugins.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by the test whose sound server runs: these tests play and listen in real time, as one
/// user's kioku would, so they take turns. Side by side under `cargo test` they shared two
/// cores: first tokens came 658-1165 ms after speech instead of 477-584 (test build), and in
/// one CI run the question spoken over the answer was heard as "I'll meditate very marlin week."
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A PulseAudio server for one test, stopped when dropped.
struct SoundServer {
    runtime: tempfile::TempDir,
    daemon: Child,
    _turn: MutexGuard<'static, ()>,
}

impl SoundServer {
    fn start() -> Self {
        // A test that failed while holding the lock poisoned it; the next one may still run.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let runtime = tempfile::tempdir().unwrap();
        let daemon = Command::new("pulseaudio")
            .args(["-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--log-target=stderr"])
            .args([
                "--load=module-native-protocol-unix",
                "--load=module-null-sink sink_name=mic",
                "--load=module-null-sink sink_name=spk",
            ])
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio runs (`make test` installs it)");
        let server = Self { runtime, daemon, _turn: turn };
        let started = Instant::now();
        while !server.command("pactl").arg("info").output().is_ok_and(|o| o.status.success()) {
            assert!(started.elapsed() < Duration::from_secs(20), "PulseAudio did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server.run("pactl", &["set-default-source", "mic.monitor"]);
        server.run("pactl", &["set-default-sink", "spk"]);
        server
    }

    /// `program` talking to this server.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("XDG_RUNTIME_DIR", self.runtime.path())
            .env_remove("PULSE_SERVER")
            .env_remove("KIOKU_MODEL")
            .current_dir(repo());
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn kioku(&self) -> Command {
        self.command(env!("CARGO_BIN_EXE_kioku"))
    }

    /// Records what is played into `spk` until the returned child is stopped.
    fn record_speakers(&self, wav: &Path) -> Child {
        self.command("parecord")
            .args(["-d", "spk.monitor", "--file-format=wav", wav.to_str().unwrap()])
            .spawn()
            .unwrap()
    }

    /// Waits until something records from the server (kioku has opened its microphone).
    fn wait_for_recording(&self, child: &mut Child) {
        let started = Instant::now();
        loop {
            let out = self.command("pactl").args(["list", "short", "source-outputs"]).output().unwrap();
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(child.try_wait().unwrap().is_none(), "kioku exited before it started listening");
            assert!(started.elapsed() < Duration::from_secs(60), "kioku never opened the microphone");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Stops a child that runs until told (parecord, kioku listen) and returns its stdout.
fn stop(child: Child) -> String {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn espeak(dir: &Path, name: &str, voice: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wav"));
    assert!(Command::new("espeak-ng")
        .args(["-v", voice, "-s", "140", "-w", path.to_str().unwrap(), text])
        .status()
        .unwrap()
        .success());
    path
}

#[test]
fn speak_plays_the_answer_through_the_sound_server() {
    let server = SoundServer::start();
    let dir = tempfile::tempdir().unwrap();
    let heard_wav = dir.path().join("speakers.wav");
    let recorder = server.record_speakers(&heard_wav);
    let out = server
        .kioku()
        .args(["ask", "--speak", "--text", "What is the capital of France?", "--max-tokens", "16"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Paris"), "{}", stdout(&out));
    assert!(stderr(&out).trim().is_empty(), "no warning and no probing chatter: {}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    stop(recorder);
    let heard = kioku(&["transcribe", heard_wav.to_str().unwrap()]);
    assert!(stdout(&heard).to_lowercase().contains("paris"), "the speakers played: {}", stdout(&heard));
}

#[test]
fn listen_hears_questions_through_the_sound_server() {
    let server = SoundServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (q0, q1) = (
        espeak(dir.path(), "q0", "en-us", "What is the capital of France?"),
        espeak(dir.path(), "q1", "en-gb", "How many days are in a week?"),
    );
    let silence = dir.path().join("silence.wav");
    assert!(Command::new("sox")
        .args(["-n", "-r", "22050", "-c", "1", "-b", "16", silence.to_str().unwrap(), "trim", "0", "1.5"])
        .status()
        .unwrap()
        .success());
    let rec = dir.path().join("two-questions.wav");
    let s = silence.to_str().unwrap();
    assert!(Command::new("sox")
        .args([s, q0.to_str().unwrap(), s, q1.to_str().unwrap(), s, rec.to_str().unwrap()])
        .status()
        .unwrap()
        .success());

    let mut listening = server
        .kioku()
        .args(["listen", "--json", "--max-tokens", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for_recording(&mut listening);
    server.run("paplay", &["-d", "mic", rec.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(3));
    let out = stop(listening);
    let replies: Vec<Value> =
        out.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert_eq!(replies.len(), 2, "{replies:#?}");
    for (reply, word) in replies.iter().zip(["capital", "week"]) {
        let transcript = reply["transcript"].as_str().unwrap_or_default().to_lowercase();
        assert!(transcript.contains(word), "{word} not heard: {reply}");
        let latency_ms = reply["latency_ms"].as_f64().unwrap();
        assert!(latency_ms > 0.0, "{reply}");
        eprintln!("through PulseAudio: end of speech -> first token {latency_ms:.0} ms ({transcript})");
    }
}

/// Lines of JSON that a child prints, as they come.
fn json_lines(child: &mut Child) -> std::sync::mpsc::Receiver<Value> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    });
    lines
}

#[test]
fn speech_over_a_spoken_answer_stops_it_through_the_sound_server() {
    let server = SoundServer::start();
    // The speakers leak into the microphone: whatever plays into `spk` is heard in `mic` as well,
    // 9 dB down (PulseAudio's volume is cubic: 70 % is 0.34), as from a speaker across a desk.
    server.run("pactl", &["load-module", "module-loopback", "source=spk.monitor", "sink=mic", "latency_msec=60"]);
    let inputs = server.command("pactl").args(["list", "short", "sink-inputs"]).output().unwrap();
    let leak = String::from_utf8_lossy(&inputs.stdout)
        .split_whitespace()
        .next()
        .expect("the loopback plays into `mic`")
        .to_string();
    server.run("pactl", &["set-sink-input-volume", &leak, "70%"]);
    let dir = tempfile::tempdir().unwrap();
    let (q0, q1) = (
        espeak(dir.path(), "q0", "en-us", "What is the capital of France?"),
        espeak(dir.path(), "q1", "en-gb", "How many days are in a week?"),
    );
    let mut listening = server
        .kioku()
        .args(["listen", "--speak", "--json", "--max-tokens", "24"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = json_lines(&mut listening);
    server.wait_for_recording(&mut listening);
    server.run("paplay", &["-d", "mic", q0.to_str().unwrap()]);
    // The reply line comes as the answer starts to play; talk over it 0.8 s in.
    let first = lines.recv_timeout(Duration::from_secs(30)).expect("the first question is answered");
    std::thread::sleep(Duration::from_millis(800));
    server.run("paplay", &["-d", "mic", q1.to_str().unwrap()]);
    let barge_in = lines.recv_timeout(Duration::from_secs(10)).expect("the answer is talked over");
    let second = lines.recv_timeout(Duration::from_secs(30)).expect("the second question is answered");
    // The second answer plays and leaks back in full: it must not be heard as a question.
    std::thread::sleep(Duration::from_secs(5));
    stop(listening);
    let extra: Vec<Value> = lines.try_iter().collect();

    assert!(first["transcript"].as_str().unwrap_or_default().to_lowercase().contains("capital"), "{first}");
    let barge_in = &barge_in["barge_in"];
    let (onset_s, stopped_s) = (barge_in["onset_s"].as_f64().unwrap(), barge_in["stopped_s"].as_f64().unwrap());
    assert!(stopped_s - onset_s <= 0.2, "stopped {:.0} ms after the onset", (stopped_s - onset_s) * 1e3);
    eprintln!(
        "through PulseAudio: the speech over the answer stopped it {:.0} ms after its onset",
        (stopped_s - onset_s) * 1e3
    );
    // Whole means from its first word (the pre-roll kept) to its last. The words between are
    // Whisper tiny's to get right or wrong: through the server the clip lands at a different
    // offset each run, and an 8 ms shift flips words (docs/BENCHMARKS.md), so the CI run of
    // 3450977 heard "how many days are we like week?". The file test (tests/barge_in.rs)
    // checks the words themselves, on input that does not move.
    let words = kioku::eval::metrics::normalized_words(second["transcript"].as_str().unwrap_or_default());
    assert!(
        words.starts_with(&["how".to_string(), "many".to_string()]) && words.last().is_some_and(|w| w == "week"),
        "the question over the answer is heard whole: {second}"
    );
    assert!(extra.is_empty(), "kioku heard its own voice: {extra:#?}");
}
