#!/usr/bin/env python3
"""kioku side by side with llama.cpp and whisper.cpp on this machine
(`make bench-anchors`, after scripts/build_anchors.sh).

Same weights on both sides: llama.cpp runs the pinned SmolLM2 GGUF
requantized to Q8_0 (kioku stores the LLM as Q8_0 blocks; the original Q4_1
is an extra row), whisper.cpp runs kioku's Whisper tiny.en converted by
scripts/ct2_to_ggml.py. Everything on 2 threads.

Rounds interleave (kioku, then llama.cpp, then whisper.cpp, then the next
round) so that a slow spell on this shared machine hits all three alike;
each figure is the median over the rounds. Every run is a fresh process.
Prints the versions, the commands and one Markdown table.

    python3 scripts/bench_anchors.py [--rounds 5]
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KIOKU_CACHE", Path.home() / ".cache" / "kioku"))
ANCHORS = CACHE / "anchors"
THREADS = 2

MODEL = ROOT / "models" / "kioku-tiny-en.safetensors"
WAV = ROOT / "examples" / "what-is-the-capital-of-france.wav"
KIOKU = ROOT / "target" / "release" / "kioku"
PROBE = ROOT / "target" / "release" / "examples" / "anchor_probe"
LLAMA_BENCH = ANCHORS / "llama.cpp" / "bin" / "llama-bench"
LLAMA_COMPLETION = ANCHORS / "llama.cpp" / "bin" / "llama-completion"
WHISPER_CLI = ANCHORS / "whisper.cpp" / "bin" / "whisper-cli"
GGUF_Q8 = ANCHORS / "SmolLM2-135M-Instruct.Q8_0.gguf"
GGUF_Q4 = CACHE / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
WHISPER_GGML = ANCHORS / "ggml-tiny.en.bin"

PREFILL = (64, 128, 512)
DEPTH = 512
DECODE = 128
# kioku's answers stop at 256 tokens by default; llama.cpp gets the same
# budget and a context just large enough for prompt + answer.
ANSWER_TOKENS, ANSWER_CTX = 256, 512


def run(cmd, env=None):
    """Runs cmd to completion; returns stdout, stderr, wall seconds and the
    child's peak RSS in MiB (wait4's ru_maxrss, KiB on Linux)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{stderr[-3000:]}")
    return stdout, stderr, wall, usage.ru_maxrss / 1024


def ms_field(text, label):
    """A '<label> = 12.34 ms' figure from llama.cpp's or whisper.cpp's log."""
    m = re.search(rf"{label}\s*=\s*([0-9.]+) ms", text)
    if not m:
        sys.exit(f"no '{label}' in:\n{text[-2000:]}")
    return float(m.group(1))


# --- the commands, one place so that they are printed as they are run ---

def probe_cmd():
    return [PROBE, MODEL, WAV, "--prefill", ",".join(map(str, PREFILL)), "--depths", f"0,{DEPTH}", "--decode", DECODE]


def kioku_ask_cmd():
    return [KIOKU, "ask", "--model", MODEL, "--json", WAV]


def llama_bench_cmds(gguf, depth):
    # Prefill at an empty context; decode after `depth` tokens (--n-depth fills
    # the cache untimed first). -r 1: the rounds are the repetitions.
    common = [LLAMA_BENCH, "-m", gguf, "-t", THREADS, "-r", 1, "-o", "json"]
    return [
        common + ["-p", ",".join(map(str, PREFILL)), "-n", 0],
        common + ["-p", 0, "-n", DECODE, "-d", f"{depth},{DEPTH}"],
    ]


def llama_answer_cmd(prompt):
    # The prompt as an argument: -f would drop its final newline, which is
    # part of the chat template ("<|im_start|>assistant\n").
    return [LLAMA_COMPLETION, "-m", GGUF_Q8, "-t", THREADS, "-c", ANSWER_CTX, "-n", ANSWER_TOKENS,
            "--temp", 0, "-no-cnv", "--no-display-prompt", "-p", prompt]


def whisper_cmd(audio_ctx=None):
    # Greedy (beam 1, best of 1) without timestamps, as kioku decodes.
    cmd = [WHISPER_CLI, "-m", WHISPER_GGML, "-f", WAV, "-t", THREADS, "-bs", 1, "-bo", 1, "-nt"]
    return cmd + (["-ac", audio_ctx] if audio_ctx else [])


# --- one run of each ---

def kioku_round():
    out, _, _, _ = run(probe_cmd(), {"RAYON_NUM_THREADS": str(THREADS)})
    probe = json.loads(out.strip().splitlines()[-1])
    out, _, _, rss = run(kioku_ask_cmd(), {"RAYON_NUM_THREADS": str(THREADS)})
    ask = json.loads(out.strip().splitlines()[-1])
    return {"probe": probe, "ask": ask, "ask_rss": rss}


def llama_bench(gguf, depth):
    figures = {}
    for cmd in llama_bench_cmds(gguf, depth):
        out, _, _, _ = run(cmd)
        for test in json.loads(out):
            key = ("pp", test["n_prompt"]) if test["n_gen"] == 0 else ("tg", test["n_depth"])
            figures[key] = test["avg_ts"]
            figures["build"] = f"{test.get('build_commit')} ({test.get('cpu_info')}, backend {test.get('backends')})"
    return figures


def llama_round(depth, prompt):
    q8, q4 = llama_bench(GGUF_Q8, depth), llama_bench(GGUF_Q4, depth)
    out, err, _, rss = run(llama_answer_cmd(prompt))
    answer = out.replace("[end of text]", "").strip()
    return {"q8": q8, "q4": q4, "answer": answer, "load_ms": ms_field(err, "load time"), "rss": rss}


def whisper_round(audio_ctx):
    rounds = {}
    for name, ac in (("full", None), ("ac", audio_ctx)):
        out, err, _, rss = run(whisper_cmd(ac))
        decode = sum(ms_field(err, f"{part} time") for part in ("sample", "decode", "batchd", "prompt"))
        rounds[name] = {
            "transcript": out.strip(),
            "load_ms": ms_field(err, "load time"),
            "mel_ms": ms_field(err, "mel time"),
            "encoder_ms": ms_field(err, "encode time"),
            "decode_ms": decode,
            "rss": rss,
            "system": next((l for l in err.splitlines() if l.startswith("system_info")), ""),
        }
    return rounds


# --- report ---

def med(rounds, get):
    return statistics.median(get(r) for r in rounds)


def table(k, l, w, depth):
    rows = []

    def row(figure, ours, ref, unit, better):
        ratio = ours / ref if ref else float("nan")
        fmt = (lambda v: f"{v:.1f}") if unit != "MiB" else (lambda v: f"{v:.0f}")
        rows.append(f"| {figure} | {fmt(ours)} {unit} | {fmt(ref)} {unit} | {ratio:.2f}× | {better} |")

    p = lambda get: med(k, lambda r: get(r["probe"]))
    for quant in ("q8", "q4"):
        name = "llama.cpp Q8_0" if quant == "q8" else "llama.cpp Q4_1 (pinned original; not the same weights)"
        ref = lambda key: med(l, lambda r: r[quant][key])
        rows.append(f"| **LLM vs {name}** | | | | |")
        row(f"decode, {DECODE} tokens after the {depth}-token chat prompt", p(lambda r: r["decode"][str(depth)]["tok_s"]), ref(("tg", depth)), "tok/s", "higher")
        row(f"decode, {DECODE} tokens at context {DEPTH}", p(lambda r: r["decode"][str(DEPTH)]["tok_s"]), ref(("tg", DEPTH)), "tok/s", "higher")
        for n in PREFILL:
            row(f"prefill, {n} tokens", p(lambda r: r["prefill"][str(n)]["tok_s"]), ref(("pp", n)), "tok/s", "higher")

    ws = lambda key, variant="full": med(w, lambda r: r[variant][key])
    rows.append("| **Whisper tiny.en vs whisper.cpp (f16), example clip** | | | | |")
    row("encoder (kioku: clip + 0.5 s silence, first call; whisper.cpp: 30 s window)", p(lambda r: r["whisper_cold"]["encoder_ms"]), ws("encoder_ms"), "ms", "lower")
    row("encoder, kioku after warm_up (as in listen/serve)", p(lambda r: r["whisper_warm"]["encoder_ms"]), ws("encoder_ms"), "ms", "lower")
    row("greedy decode, no timestamps (first call; whisper.cpp: prompt+decode+batchd+sample)", p(lambda r: r["whisper_cold"]["decode_ms"]), ws("decode_ms"), "ms", "lower")
    row("greedy decode, kioku after warm_up", p(lambda r: r["whisper_warm"]["decode_ms"]), ws("decode_ms"), "ms", "lower")
    row("mel + encoder + decode (first call)", p(lambda r: r["whisper_cold"]["total_ms"]), ws("mel_ms") + ws("encoder_ms") + ws("decode_ms"), "ms", "lower")
    ac = k[0]["probe"]["encoder_frames"]
    row(f"encoder vs whisper.cpp `-ac {ac}` (its window cut to kioku's {ac} frames)", p(lambda r: r["whisper_cold"]["encoder_ms"]), ws("encoder_ms", "ac"), "ms", "lower")
    # No reference answers a spoken question in one program: kioku's figure alone.
    first = p(lambda r: r["first_token_ms"]["cascade"])
    rows.append(f"| end of audio → first answer token, cascade, after warm_up | {first:.1f} ms | — | — | lower |")

    rows.append("| **Load and memory** | | | | |")
    load = med(k, lambda r: r["ask"]["timings_ms"]["load"])
    row("load, whole file (kioku ask) vs llama.cpp + whisper.cpp load times", load, med(l, lambda r: r["load_ms"]) + ws("load_ms"), "ms", "lower")
    row("load, LLM only (llama.cpp: model + context + warm-up eval)", p(lambda r: r["llm_load_ms"]), med(l, lambda r: r["load_ms"]), "ms", "lower")
    row("load, Whisper only", p(lambda r: r["whisper_load_ms"]), ws("load_ms"), "ms", "lower")
    rss = med(k, lambda r: r["ask_rss"])
    row("peak RSS, `kioku ask` on the clip vs whisper-cli on it", rss, ws("rss"), "MiB", "lower")
    row(f"peak RSS, `kioku ask` vs the llama.cpp answer run (-c {ANSWER_CTX})", rss, med(l, lambda r: r["rss"]), "MiB", "lower")
    row("peak RSS, `kioku ask` vs whisper-cli + llama.cpp answer (two processes)", rss, ws("rss") + med(l, lambda r: r["rss"]), "MiB", "lower")

    head = ["| figure | kioku | reference | kioku/reference | better when |", "|---|---|---|---|---|"]
    return "\n".join(head + rows)


def sh(cmd):
    return " ".join(str(c) for c in cmd).replace(str(Path.home()), "~")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for path in (MODEL, KIOKU, PROBE, LLAMA_BENCH, LLAMA_COMPLETION, WHISPER_CLI, GGUF_Q8, GGUF_Q4, WHISPER_GGML):
        if not path.exists():
            sys.exit(f"missing {path}: run `make bench-anchors`")

    k, l, w = [], [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        k.append(kioku_round())
        probe = k[0]["probe"]
        # llama.cpp answers kioku's chat prompt for the transcript, and
        # decodes after as many tokens as that prompt has.
        l.append(llama_round(probe["chat_prompt_tokens"], probe["chat_prompt"]))
        w.append(whisper_round(probe["encoder_frames"]))
        print(f"round {r + 1}/{args.rounds}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)

    probe = k[0]["probe"]
    depth = probe["chat_prompt_tokens"]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.processor())

    print(f"## kioku vs llama.cpp and whisper.cpp ({args.rounds} interleaved rounds, medians; {THREADS} threads; {cpu}, {os.cpu_count()} CPUs)\n")
    print(f"- kioku {commit or '(not a git checkout)'}{' + uncommitted changes' if dirty else ''}, {MODEL.relative_to(ROOT)} (release build)")
    print("- llama.cpp ggml-org/llama.cpp@0c1e57098 as vendored in the llama-cpp-python 0.3.36 sdist; "
          f"build: {l[0]['q8']['build']}")
    print(f"- whisper.cpp 1.8.5 as vendored in the pywhispercpp 1.5.1 sdist; {w[0]['full']['system']}")
    print(f"- clip: {WAV.relative_to(ROOT)}, {probe['clip_s']:.2f} s; kioku encodes it plus 0.5 s of silence ({probe['encoder_frames']} encoder frames), whisper.cpp pads to 30 s (1500 frames)")
    print("\nCommands (one run each per round; RAYON_NUM_THREADS=2 for kioku):\n")
    print("```")
    print(sh(probe_cmd()))
    print(sh(kioku_ask_cmd()))
    for cmd in llama_bench_cmds(GGUF_Q8, depth) + llama_bench_cmds(GGUF_Q4, depth):
        print(sh(cmd))
    print(sh(llama_answer_cmd('"$PROMPT"')) + "   # $PROMPT: kioku's chat prompt for the transcript")
    print(sh(whisper_cmd()))
    print(sh(whisper_cmd(probe["encoder_frames"])))
    print("```\n")
    print(table(k, l, w, depth))

    print("\nTranscripts and answers (round 1):\n")
    print(f"- kioku transcript: {probe['transcript']!r}")
    print(f"- whisper.cpp transcript: {w[0]['full']['transcript']!r}; with -ac {probe['encoder_frames']}: {w[0]['ac']['transcript']!r}")
    short = lambda text: repr(text if len(text) <= 120 else text[:120] + " …")
    print(f"- kioku answer ({k[0]['ask']['answer_tokens']} tokens): {short(k[0]['ask']['answer'])}")
    print(f"- llama.cpp Q8_0 answer: {short(l[0]['answer'])}")


if __name__ == "__main__":
    main()
