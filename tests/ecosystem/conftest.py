"""Shared fixtures for the ecosystem tests: kioku next to the tools the wider
ecosystem uses on the same weights (Hugging Face transformers and PEFT,
llama.cpp's GGUF files). kioku's side runs as built by `make test`: the
`kioku` binary and the `logits` example (examples/logits.rs), which writes the
LLM's logits for given token ids."""

import os
import pathlib
import subprocess

import pytest
from safetensors.numpy import load_file

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
KIOKU = pathlib.Path(os.environ.get("KIOKU_BIN", TARGET / "kioku"))
LOGITS = TARGET / "examples" / "logits"
MODEL = pathlib.Path(os.environ.get("KIOKU_MODEL", REPO / "models" / "kioku-tiny-en.safetensors"))
CACHE = pathlib.Path(os.environ.get("KIOKU_CACHE", pathlib.Path.home() / ".cache" / "kioku"))
# What `make fetch` unpacks: the pinned checkpoints kioku's default model is packed from.
WHISPER_CT2 = CACHE / "whisper-tiny.en"
SMOLLM2_GGUF = CACHE / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_kioku(*args, check=True):
    """Runs the kioku CLI; returns the finished process (stdout and stderr as text)."""
    done = subprocess.run([str(KIOKU), *map(str, args)], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"kioku {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
    return done


def kioku_logits(model, tokens, out, adapters=(), dense=True):
    """kioku's LLM logits (positions, vocab) for `tokens`, as a numpy array."""
    cmd = [str(LOGITS), str(model), "--tokens", ",".join(map(str, tokens)), "--out", str(out)]
    for adapter in adapters:
        cmd += ["--adapter", str(adapter)]
    if dense:
        cmd.append("--dense")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"logits failed ({done.returncode}):\n{done.stderr}")
    return load_file(str(out))["logits"]


@pytest.fixture(scope="session", autouse=True)
def built():
    for path in (KIOKU, LOGITS, MODEL):
        if not path.exists():
            pytest.exit(f"{path} is missing: run `make test`, which builds it", returncode=2)
