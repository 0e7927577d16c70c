#!/usr/bin/env python3
"""Converts kioku's pinned Whisper checkpoint (CTranslate2 `model.bin`,
`config.json`, `tokenizer.json`) into whisper.cpp's ggml model file, so that
`make bench-anchors` runs whisper.cpp on exactly the weights kioku runs.

    python3 scripts/ct2_to_ggml.py $KIOKU_CACHE/whisper-tiny.en out.bin [--check ggml-ref.bin]

numpy only (no torch). The output is what whisper.cpp's own
models/convert-pt-to-ggml.py writes from OpenAI's checkpoint:
  magic 0x67676d6c, 11 int32 hparams, ftype 1 (f16)
  mel filters: int32 n_mel, int32 n_fft (201), then n_mel*201 float32
  vocab: int32 count, then per token int32 length + raw bytes (ids 0..count-1)
  tensors: int32 n_dims, name length, type (0 f32, 1 f16); dims innermost
           first; the name; the data. 2-D and 3-D weights in f16; biases,
           norms and positional embeddings in f32.

--check compares the header, filters and vocab with another ggml file (for
example whisper.cpp's models/for-tests-ggml-tiny.en.bin, which holds only
those) and fails if they differ.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

GGML_MAGIC = 0x67676D6C
SAMPLE_RATE, N_FFT = 16000, 400

# CTranslate2 dtype codes (as in src/import/ctranslate2.rs).
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    """model.bin (binary version 6) -> {name: numpy array}; aliases are skipped."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string():
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    (version,) = take("I")
    assert version == 6, f"CTranslate2 binary version {version} (expected 6)"
    assert string() == "WhisperSpec", "not a CTranslate2 Whisper model"
    take("I")  # revision
    (count,) = take("I")
    out = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take(f"{rank}I") if rank else ()
        (dtype, nbytes) = take("BI")
        if dtype not in CT2_DTYPES:
            raise SystemExit(f"{name}: CTranslate2 dtype {dtype} not supported (quantized model?)")
        out[name] = np.frombuffer(data, CT2_DTYPES[dtype], nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize, pos).reshape(dims)
        pos += nbytes
    return out


def openai_state_dict(ct2):
    """CTranslate2 names -> OpenAI Whisper names (what whisper.cpp looks up).
    CTranslate2 fuses self-attention q|k|v and cross-attention k|v row-wise and
    stores a zero key bias, which Whisper does not have."""
    sd = {}

    def linear(src, dst, bias=True):
        sd[f"{dst}.weight"] = ct2[f"{src}/weight"]
        if bias:
            sd[f"{dst}.bias"] = ct2[f"{src}/bias"]

    def norm(src, dst):
        sd[f"{dst}.weight"] = ct2[f"{src}/gamma"]
        sd[f"{dst}.bias"] = ct2[f"{src}/beta"]

    def fused(src, dsts):
        w, b = ct2[f"{src}/weight"], ct2[f"{src}/bias"]
        n = w.shape[0] // len(dsts)
        for k, dst in enumerate(dsts):
            sd[f"{dst}.weight"] = w[k * n : (k + 1) * n]
            if not dst.endswith(".key"):
                sd[f"{dst}.bias"] = b[k * n : (k + 1) * n]

    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"encoder.{conv}")
    sd["encoder.positional_embedding"] = ct2["encoder/position_encodings/encodings"]
    sd["decoder.positional_embedding"] = ct2["decoder/position_encodings/encodings"]
    sd["decoder.token_embedding.weight"] = ct2["decoder/embeddings/weight"]
    norm("encoder/layer_norm", "encoder.ln_post")
    norm("decoder/layer_norm", "decoder.ln")
    for side in ("encoder", "decoder"):
        i = 0
        while f"{side}/layer_{i}/ffn/linear_0/weight" in ct2:
            s, d = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
            fused(f"{s}/self_attention/linear_0", [f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"])
            linear(f"{s}/self_attention/linear_1", f"{d}.attn.out")
            norm(f"{s}/ffn/layer_norm", f"{d}.mlp_ln")
            linear(f"{s}/ffn/linear_0", f"{d}.mlp.0")
            linear(f"{s}/ffn/linear_1", f"{d}.mlp.2")
            if side == "decoder":
                norm(f"{s}/attention/layer_norm", f"{d}.cross_attn_ln")
                linear(f"{s}/attention/linear_0", f"{d}.cross_attn.query")
                fused(f"{s}/attention/linear_1", [f"{d}.cross_attn.key", f"{d}.cross_attn.value"])
                linear(f"{s}/attention/linear_2", f"{d}.cross_attn.out")
            i += 1
    return sd


def scalar(a):
    return int(np.asarray(a).reshape(-1)[0])


def mel_filters(n_mels):
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels) with Slaney scale and
    norm, computed as kioku's src/audio/mel.rs does (f64, then f32)."""
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(hz):
        return hz / f_sp if hz < min_log_hz else min_log_mel + np.log(hz / min_log_hz) / log_step

    def mel_to_hz(mel):
        return np.where(mel < min_log_mel, mel * f_sp, min_log_hz * np.exp(log_step * (mel - min_log_mel)))

    lo, hi = hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2)
    edges = mel_to_hz(lo + (hi - lo) * np.arange(n_mels + 2) / (n_mels + 1))
    freqs = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = np.minimum((freqs - left) / (center - left), (right - freqs) / (right - center))
    return (np.maximum(w, 0.0) * (2.0 / (right - left))).astype(np.float32)


def vocab_bytes(tokenizer_json):
    """Token ids 0..<|endoftext|> as raw bytes, undoing GPT-2's byte-to-unicode
    mapping; whisper.cpp numbers the special tokens after them itself."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_of = {chr(c): b for b, c in zip(bs, cs)}
    vocab = json.loads(Path(tokenizer_json).read_text())["model"]["vocab"]
    eot = vocab["<|endoftext|>"]
    by_id = {i: t for t, i in vocab.items()}
    assert sorted(by_id) == list(range(eot + 1)), "expected a dense BPE vocabulary ending in <|endoftext|>"
    return [t.encode() if t == "<|endoftext|>" else bytes(byte_of[c] for c in t) for t in (by_id[i] for i in range(eot + 1))]


def check_vocab(tokens, ref):
    """`ref`: a ggml file's vocabulary section. whisper.cpp's published tiny.en
    was converted with tokens decoded as UTF-8 (invalid bytes -> U+FFFD); today's
    converter writes raw bytes, as this one does. Both are accepted."""
    (count,) = struct.unpack_from("<i", ref, 0)
    assert count == len(tokens), f"vocabulary has {len(tokens)} tokens, the reference {count}"
    pos, lossy = 4, 0
    for token in tokens:
        (n,) = struct.unpack_from("<i", ref, pos)
        theirs = ref[pos + 4 : pos + 4 + n]
        pos += 4 + n
        if theirs != token:
            assert theirs == token.decode("utf-8", "replace").encode(), f"token {token!r} differs from the reference {theirs!r}"
            lossy += 1
    print(f"vocabulary: {count} tokens, {lossy} of them partial UTF-8 sequences that the reference stores as U+FFFD")


def header_bytes(hparams, filters, tokens):
    out = [struct.pack("<12i", GGML_MAGIC, *hparams, 1)]  # ftype 1: f16 weights
    out.append(struct.pack("<2i", *filters.shape) + filters.astype("<f4").tobytes())
    out.append(struct.pack("<i", len(tokens)))
    out += [struct.pack("<i", len(t)) + t for t in tokens]
    return b"".join(out)


def tensor_bytes(name, data):
    # f16 for matrices and conv kernels, as whisper.cpp's converters do; the
    # small tensors and the positional embeddings stay f32 (whisper.cpp wants them so).
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        data = data.reshape(-1, 1)
    f32 = data.ndim < 2 or name.endswith("positional_embedding") or name.endswith("conv1.bias") or name.endswith("conv2.bias")
    data = np.ascontiguousarray(data, dtype="<f4" if f32 else "<f2")
    encoded = name.encode()
    head = struct.pack("<3i", data.ndim, len(encoded), 0 if f32 else 1) + struct.pack(f"<{data.ndim}i", *reversed(data.shape))
    return head + encoded + data.tobytes()


def main():
    args = sys.argv[1:]
    check = None
    if "--check" in args:
        i = args.index("--check")
        check = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        raise SystemExit(__doc__)
    src, out = Path(args[0]), Path(args[1])

    ct2 = read_ct2(src / "model.bin")
    sd = openai_state_dict(ct2)
    n_vocab, d_model = sd["decoder.token_embedding.weight"].shape
    n_mels = sd["encoder.conv1.weight"].shape[1]
    layers = lambda side: sum(1 for k in sd if k.startswith(f"{side}.blocks.") and k.endswith(".mlp_ln.weight"))
    hparams = (
        n_vocab,
        sd["encoder.positional_embedding"].shape[0],  # n_audio_ctx
        d_model,
        scalar(ct2["encoder/num_heads"]),
        layers("encoder"),
        sd["decoder.positional_embedding"].shape[0],  # n_text_ctx
        d_model,
        scalar(ct2["decoder/num_heads"]),
        layers("decoder"),
        n_mels,
    )
    tokens = vocab_bytes(src / "tokenizer.json")
    head = header_bytes(hparams, mel_filters(n_mels), tokens)

    if check:
        ref = Path(check).read_bytes()
        n_head = 4 * 14  # magic, 10 hparams, ftype, n_mel, n_fft; then the filters
        assert ref[:n_head] == head[:n_head], "hparams differ from the reference file"
        n_filters = int(np.prod(struct.unpack_from("<2i", head, 48)))
        mine = np.frombuffer(head, "<f4", n_filters, 56)
        theirs = np.frombuffer(ref, "<f4", n_filters, 56)
        print(f"mel filters: max |kioku - reference| = {np.abs(mine - theirs).max():.3g} (max value {theirs.max():.3g})")
        assert np.allclose(mine, theirs, rtol=1e-5, atol=1e-8), "mel filters differ from the reference file"
        check_vocab(tokens, ref[56 + 4 * n_filters :])
        print("hparams, mel filters and vocabulary match", check)

    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        f.write(head)
        for name, data in sd.items():
            f.write(tensor_bytes(name, data))
    tmp.rename(out)
    print(f"wrote {out}: {len(sd)} tensors, hparams {hparams}")


if __name__ == "__main__":
    main()
