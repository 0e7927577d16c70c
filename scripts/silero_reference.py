#!/usr/bin/env python3
"""Speech probabilities from the silero-vad package's own definition of the network whose weights
kioku packs (`silero_vad/tinygrad_model.py` with `silero_vad/data/silero_vad_16k.safetensors`,
silero-vad 6.2.3), fed as the package's docstring feeds it: 512-sample chunks, each prefixed with
the previous chunk's last 64 samples, the last chunk zero-padded. Run once; the output is
committed as tests/fixtures/vad/vad-reference.json, the reference of tests/silero.rs.

Usage: pip install silero-vad==6.2.3 tinygrad==0.14.0 numpy   (tinygrad compiles with clang)
       DEV=CPU python3 scripts/silero_reference.py tests/fixtures/vad/vad-reference.wav tests/fixtures/vad/vad-reference.json

The WAV is 16 kHz mono: 0.5 s silence, espeak-ng "What is the capital of France?", 0.5 s silence,
1 s white noise at -30 dB, espeak-ng (en-gb+f3) "How many days are in a week?" at half level, 1 s
brown noise at -20 dB, 0.5 s silence (sox, with -R for repeatable noise).

The package's TorchScript and ONNX exports carry another set of weights: on this WAV their
probabilities differ from these by up to 0.38, so they are not the reference for this file.
"""
import hashlib
import importlib.util
import json
import sys
import wave
from pathlib import Path

import numpy as np
from tinygrad import Tensor
from tinygrad.nn.state import load_state_dict, safe_load

# The package's __init__ imports torch; the tinygrad model needs only its own file.
PACKAGE = Path(importlib.util.find_spec("silero_vad").submodule_search_locations[0])
spec = importlib.util.spec_from_file_location("tinygrad_model", PACKAGE / "tinygrad_model.py")
tinygrad_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tinygrad_model)

CHUNK, CONTEXT = 512, 64

wav_path, out = sys.argv[1], sys.argv[2]
with wave.open(wav_path) as w:
    assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
    pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
audio = pcm.astype(np.float32) / 32768.0
audio = np.pad(audio, (CONTEXT, (-len(audio)) % CHUNK))

model = tinygrad_model.TinySileroVAD()
load_state_dict(model, safe_load(str(PACKAGE / "data" / "silero_vad_16k.safetensors")))
state, probabilities = None, []
for i in range(CONTEXT, len(audio), CHUNK):
    p, state = model(Tensor(audio[None, i - CONTEXT:i + CHUNK]), state)
    state = state.realize()  # else the lazy graph grows with every chunk
    probabilities.append(round(float(p.numpy()[0, 0]), 6))
json.dump({"reference": "silero-vad 6.2.3, tinygrad_model.TinySileroVAD with data/silero_vad_16k.safetensors",
           "wav_sha256": hashlib.sha256(open(wav_path, "rb").read()).hexdigest(),
           "chunk": CHUNK, "probabilities": probabilities}, open(out, "w"))
print(f"{len(probabilities)} chunks, {sum(p > 0.5 for p in probabilities)} above 0.5")
