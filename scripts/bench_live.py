#!/usr/bin/env python3
"""Live latency through a real sound server (run by `make bench-live`; not a test).

Plays the three-question recording of tests/listen.rs (espeak-ng voices,
1.5 s apart, 44.1 kHz stereo) into a PulseAudio null sink whose monitor is
the default source, as tests/audio_server.rs does, while `kioku listen --json`
hears it through cpal and ALSA's `default` device. Each round starts its own
server. Rounds alternate between text answers and spoken ones (`--speak`,
played into a second null sink).

Prints, per question, end of speech -> first answer token (`latency_ms`) and,
with --speak, -> first spoken sample (`first_audio_ms`), as min-max over the
rounds, with what Whisper heard.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
KIOKU = str(REPO / "target" / "release" / "kioku")
MODEL = str(REPO / "models" / "kioku-tiny-en.safetensors")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
QUESTIONS = [
    ("en-us", "What is the capital of France?"),
    ("en-gb", "How many days are in a week?"),
    ("en-us+f3", "What colour is the sky?"),
]


def run(*args, env=None):
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)


def recording(dir):
    """The recording of tests/listen.rs: 1 s, question, 1.5 s, question, 1.5 s, question, 1 s."""
    parts = []
    for seconds in (1.0, 1.5):
        run("sox", "-n", "-r", "22050", "-c", "1", "-b", "16", f"{dir}/silence-{seconds}.wav", "trim", "0", str(seconds))
    for i, (voice, text) in enumerate(QUESTIONS):
        run("espeak-ng", "-v", voice, "-s", "140", "-w", f"{dir}/q{i}.wav", text)
        parts += [f"{dir}/silence-{1.0 if i == 0 else 1.5}.wav", f"{dir}/q{i}.wav"]
    out = f"{dir}/three-questions.wav"
    run("sox", *parts, f"{dir}/silence-1.0.wav", "-r", "44100", "-c", "2", "-b", "16", out)
    return out


def one_round(wav, speak):
    """Starts a sound server, plays `wav` into its microphone, and returns kioku's replies."""
    with tempfile.TemporaryDirectory() as runtime:
        env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}
        env.update(XDG_RUNTIME_DIR=runtime, KIOKU_MODEL=MODEL)
        server = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
             "--load=module-native-protocol-unix",
             "--load=module-null-sink sink_name=mic", "--load=module-null-sink sink_name=spk"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 20
            while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
                if time.time() > deadline:
                    sys.exit("PulseAudio did not start (`make test` installs pulseaudio and libasound2-plugins)")
                time.sleep(0.1)
            run("pactl", "set-default-source", "mic.monitor", env=env)
            run("pactl", "set-default-sink", "spk", env=env)
            args = [KIOKU, "listen", "--json", "--max-tokens", "8"] + (["--speak"] if speak else [])
            listening = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 60
            while not subprocess.run(["pactl", "list", "short", "source-outputs"], env=env,
                                     capture_output=True, text=True).stdout.strip():
                if listening.poll() is not None or time.time() > deadline:
                    sys.exit(f"kioku did not start listening: {listening.stderr.read()}")
                time.sleep(0.1)
            run("paplay", "-d", "mic", wav, env=env)
            time.sleep(3)
            listening.send_signal(signal.SIGTERM)
            out, _ = listening.communicate()
        finally:
            server.kill()
            server.wait()
    return [reply for reply in map(json.loads, out.splitlines()) if "transcript" in reply]


def span(values):
    values = [v for v in values if v is not None]
    return f"{min(values):.0f}–{max(values):.0f}" if values else "—"


def main():
    with tempfile.TemporaryDirectory() as dir:
        wav = recording(dir)
        results = {False: [], True: []}
        for r in range(ROUNDS):
            for speak in (False, True):
                replies = one_round(wav, speak)
                heard = " | ".join(f"{reply['latency_ms']:.0f} ms {reply['transcript']!r}" for reply in replies)
                print(f"round {r + 1}{' --speak' if speak else ''}: {heard}", file=sys.stderr)
                results[speak].append(replies)
    print(f"Through PulseAudio, {ROUNDS} rounds each (ms, min–max):\n")
    print("| question | first token | with --speak: first token | first spoken sample | heard as |")
    print("|---|---|---|---|---|")
    for i, (_, text) in enumerate(QUESTIONS):
        def at(speak, key):
            return [replies[i][key] if i < len(replies) else None for replies in results[speak]]
        heard = sorted({replies[i]["transcript"] for replies in results[False] + results[True] if i < len(replies)})
        print(f"| {text} | {span(at(False, 'latency_ms'))} | {span(at(True, 'latency_ms'))} | "
              f"{span(at(True, 'first_audio_ms'))} | {' / '.join(heard)} |")


if __name__ == "__main__":
    main()
