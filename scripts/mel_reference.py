#!/usr/bin/env python3
"""Regenerate the reference fixtures for tests/mel.rs (not needed to run the tests).

    pip install numpy librosa
    python3 scripts/mel_reference.py [SOURCE_WAV]

Writes into tests/fixtures/mel/:
  speech.wav        the first 16077 samples (1.0 s plus 77 samples, so the clip is
                    not a whole number of hops) of a 16 kHz LibriVox clip from the
                    Debian package pocketsphinx-testdata, as 16-bit mono PCM
  filters_80.f32    librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), [80, 201]
  filters_128.f32   the same with n_mels=128, [128, 201]
  logmel_80.f32     OpenAI Whisper's log_mel_spectrogram of speech.wav without the
                    30 s padding, in float64, [80, n_frames]
All .f32 files are raw little-endian float32, row-major.
"""
import sys
import wave
from pathlib import Path

import librosa
import numpy as np

SOURCE = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mel"
SR, N_FFT, HOP, N_SAMPLES = 16000, 400, 160, 16077


def read_clip(path):
    with wave.open(path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        return w.readframes(N_SAMPLES)


def whisper_log_mel(audio, filters):
    """whisper/audio.py::log_mel_spectrogram in numpy: torch.stft(center=True,
    pad_mode='reflect') with a periodic Hann window, drop the last frame."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    x = np.pad(audio, N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(x) - N_FFT) // HOP
    frames = np.stack([x[t * HOP : t * HOP + N_FFT] for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = filters @ power[:-1].T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    pcm = read_clip(sys.argv[1] if len(sys.argv) > 1 else SOURCE)
    with wave.open(str(OUT / "speech.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm)
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0

    for n_mels in (80, 128):
        f = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=n_mels)
        f.astype("<f4").tofile(OUT / f"filters_{n_mels}.f32")
    filters = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=80).astype(np.float64)
    log_mel = whisper_log_mel(audio, filters)
    assert log_mel.shape == (80, N_SAMPLES // HOP)
    log_mel.astype("<f4").tofile(OUT / "logmel_80.f32")
    print(f"wrote {OUT}: log-mel {log_mel.shape}, range [{log_mel.min():.3f}, {log_mel.max():.3f}]")


if __name__ == "__main__":
    main()
