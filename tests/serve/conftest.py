"""Fixtures for the `kioku serve` tests: real adapters made with `kioku adapt`
on clips synthesized with espeak-ng, and a real server process on a free
loopback port, stopped with SIGTERM at the end (which must exit cleanly)."""

import base64
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
KIOKU = pathlib.Path(os.environ.get("KIOKU_BIN", REPO / "target" / "debug" / "kioku"))
MODEL = pathlib.Path(os.environ.get("KIOKU_MODEL", REPO / "models" / "kioku-tiny-en.safetensors"))
EXAMPLE = REPO / "examples" / "what-is-the-capital-of-france.wav"
# The same recording as 64 kb/s MP3 with an ID3v2 tag (lame), as many clients send audio.
EXAMPLE_MP3 = REPO / "tests" / "fixtures" / "what-is-the-capital-of-france.mp3"
API_KEY = "test-key-0123456789"

# Sentences the test adapters are trained on: a speaker with a slow, low voice.
ADAPT_TEXTS = [
    "Please turn on the kitchen lights.",
    "What is the weather like tomorrow morning?",
    "Set a timer for ten minutes.",
    "Remind me to call my sister tonight.",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthesize(text, path, voice="en+m3", speed=140):
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)


def wav_b64(path):
    return base64.b64encode(pathlib.Path(path).read_bytes()).decode()


def wait_healthy(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kioku serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("kioku serve did not become healthy in time")


class Server:
    def __init__(self, args, tmp):
        assert KIOKU.exists(), f"{KIOKU} is missing: build it first (cargo build)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = tmp / f"serve-{self.port}.log"
        self.stderr = open(self.stderr_path, "w+")
        self.process = subprocess.Popen(
            [str(KIOKU), "serve", "--model", str(MODEL), "--device", "cpu", "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        try:
            wait_healthy(self.url, self.process)
        except RuntimeError:
            self.process.kill()
            raise

    def stop(self, timeout=120):
        """SIGTERM, then the exit code (the server finishes what is in flight first)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.stderr.close()
        return code

    def log(self):
        return self.stderr_path.read_text()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def adapters(workdir):
    """Two speaker adapters trained with `kioku adapt` (a few steps, no replay,
    acting on every turn, so that they change the LLM's typed answers): alice
    on the LLM's attention, bob on the LLM's and the encoder's."""
    data = workdir / "speaker"
    data.mkdir()
    lines = []
    for i, text in enumerate(ADAPT_TEXTS):
        synthesize(text, data / f"clip{i}.wav")
        lines.append(f"clip{i}\t{text}")
    (data / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    made = {}
    for name, targets, seed in [("alice", "llm-attn", "1"), ("bob", "llm-attn,encoder-attn", "2")]:
        out = workdir / name
        subprocess.run(
            [str(KIOKU), "adapt", "--model", str(MODEL), "--device", "cpu", "--data", str(data), "--out", str(out),
             "--targets", targets, "--steps", "6", "--batch-size", "2", "--lr", "1e-2", "--seed", seed, "--no-replay",
             "--llm-turns", "all", "--spoken-target", "transcript", "--llm-scale", "1"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        made[name] = out
    return made


@pytest.fixture(scope="session")
def server(workdir, adapters):
    s = Server(
        ["--api-key", API_KEY, "--parallel", "2", "--queue", "64", "--max-audio-s", "30", "--max-body-mb", "2",
         "--adapter", f"alice={adapters['alice']}:1", "--adapter", f"bob={adapters['bob']}:0.5", "--allow-adapter-loading"],
        workdir,
    )
    yield s
    code = s.stop()
    assert code == 0, f"kioku serve exited with {code} on SIGTERM:\n{s.log()}"


@pytest.fixture(scope="session")
def question_wavs(workdir):
    """Spoken questions in a voice the model knows well, plus the example recording."""
    wavs = {"france": EXAMPLE}
    for name, text in [("blue", "Why is the sky blue?"), ("water", "What is the boiling point of water?")]:
        path = workdir / f"{name}.wav"
        synthesize(text, path, voice="en-us", speed=160)
        wavs[name] = path
    return wavs
