#!/usr/bin/env bash
# The GPU check of issue 12, for a machine with an NVIDIA GPU and no network,
# no Rust and no model: it packs random-weight models on the spot and prints
# one Markdown table (parity CPU vs CUDA, speed on the default shapes, one
# adaptation on the GPU). Build here with `make build-cuda`, copy the repo
# (or just this script, the example WAV and BIN_DIR) there, then run:
#
#   bash scripts/gpu-check.sh [BIN_DIR]     # BIN_DIR: target/cuda/release
#
# The three binaries are 168 MB stripped; to carry them, pack them here
#   (cd target/cuda/release && strip kioku examples/parity examples/anchor_probe &&
#    tar cJf ../../../cuda-bins.tar.xz kioku examples/parity examples/anchor_probe)   # 24 MB
# and unpack there with `mkdir -p bin && tar xJf cuda-bins.tar.xz -C bin`, BIN_DIR=bin.
#
# A dry run of every step on a CPU build, here: DEVICE=cpu SHAPES=tiny
# bash scripts/gpu-check.sh target/debug (SHAPES: the model of the speed and
# adaptation runs).
#
# cuBLAS, cuRAND, NVRTC and the CUDA runtime are loaded from the library path,
# else from the CUDA 13 wheels of the machine's python3 (PyTorch brings them).
set -euo pipefail
bin=${1:-target/cuda/release}
device=${DEVICE:-cuda} shapes=${SHAPES:-default}
kioku=$bin/kioku parity=$bin/examples/parity probe=$bin/examples/anchor_probe
wav=examples/what-is-the-capital-of-france.wav
work=$(mktemp -d)
sampler=
trap '[ -z "$sampler" ] || kill "$sampler" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "gpu-check: $*" >&2; exit 1; }
step() { echo "gpu-check: $*" >&2; }

for b in "$kioku" "$parity" "$probe"; do [ -x "$b" ] || fail "$b is missing: run \`make build-cuda\` and copy $bin"; done
[ -f "$wav" ] || fail "$wav is missing: run from kioku's checkout"
gpu=CPU
if [ "$device" = cuda ]; then
    command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this is not a GPU machine"
    if ! ldconfig -p | grep -q 'libcublas\.so\.13'; then
        wheels=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))' 2>/dev/null) ||
            fail "no libcublas.so.13 on the library path and no CUDA 13 wheels in python3"
        export LD_LIBRARY_PATH="$wheels${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
fi

step "packing the random models"
"$kioku" pack --random-shapes tiny --seed 1 -o "$work/tiny.safetensors" >&2 || fail "pack --random-shapes tiny failed"
"$kioku" pack --random-shapes default --seed 1 -o "$work/default.safetensors" >&2 || fail "pack --random-shapes default failed"

step "parity, CPU dense f32 against $device fast, on the tiny model"
parity_ok=yes
"$parity" "$work/tiny.safetensors" --device "$device" > "$work/parity.md" || parity_ok=NO
[ -s "$work/parity.md" ] || fail "the parity check printed nothing (see above)"

step "speed on the $shapes shapes (3 s clip), GPU memory sampled meanwhile"
touch "$work/memory"
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$work/memory" &
    sampler=$!
fi
"$probe" "$work/$shapes.safetensors" "$wav" --device "$device" --prefill 128 --depths 0 --decode 128 > "$work/probe.json" ||
    fail "anchor_probe failed on $device"
[ -z "$sampler" ] || { kill "$sampler"; sampler=; }

# No espeak-ng there, so the clips are synthetic tones with made-up
# transcripts: on random weights what matters is that a step runs on the GPU
# and the loss falls. Two runs (2 and 10 steps) separate a step from loading.
step "adaptation on $device: 8 clips, batch 8"
python3 - "$work/clips" <<'PY' || fail "cannot write the clips"
import math, os, struct, sys, wave
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "transcripts.tsv"), "w") as tsv:
    for i in range(8):
        with wave.open(os.path.join(out, f"clip{i}.wav"), "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
            f = 200 + 50 * i
            w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * f * t / 16000))) for t in range(16000 * 2)))
        tsv.write(f"clip{i}\tnumber {i} is a tone of {f} hertz\n")
PY
adapt() {
    local start end
    start=$(date +%s.%N)
    "$kioku" adapt --model "$work/$shapes.safetensors" --device "$device" --data "$work/clips" --out "$work/adapter$1" \
        --no-replay --steps "$1" --batch-size 8 2> "$work/adapt$1.log" || { cat "$work/adapt$1.log" >&2; fail "kioku adapt failed on $device"; }
    end=$(date +%s.%N)
    echo "$start $end"
}
read -r a2 b2 < <(adapt 2)
read -r a10 b10 < <(adapt 10)
losses=$(grep -o 'loss [0-9.]* -> [0-9.]*' "$work/adapt10.log" || echo "loss ?")

python3 - "$work" "$gpu" "$parity_ok" "$a2" "$b2" "$a10" "$b10" "$losses" "$shapes" <<'PY'
import json, sys
work, gpu, parity_ok, a2, b2, a10, b10, losses, shapes = sys.argv[1:]
p = json.load(open(f"{work}/probe.json"))
memory = [int(x) for x in open(f"{work}/memory").read().split() if x.isdigit()]
step_ms = ((float(b10) - float(a10)) - (float(b2) - float(a2))) / 8 * 1e3
decode = next(iter(p["decode"].values()))
rows = [
    ("encoder, 3 s clip (warm)", f'{p["whisper_warm"]["encoder_ms"]:.1f} ms', ""),
    ("ASR decode (warm; random weights decode until end of text or 448 tokens)", f'{p["whisper_warm"]["decode_ms"]:.1f} ms', ""),
    ("prefill, 128 tokens", f'{p["prefill"]["128"]["tok_s"]:.0f} tok/s', ""),
    (f'decode, 128 tokens after {next(iter(p["decode"]))}', f'{decode["tok_s"]:.0f} tok/s', ">= 300"),
    ("end of audio -> first token, e2e", f'{p["first_token_ms"].get("e2e", float("nan")):.1f} ms', "<= 40"),
    ("end of audio -> first token, cascade", f'{p["first_token_ms"]["cascade"]:.1f} ms', ""),
    ("GPU memory, peak during the speed run", f"{max(memory) - min(memory)} MiB above idle" if memory else "?", ""),
    ("adaptation step, 8 clips (default targets)", f"{step_ms:.0f} ms", "<= 300"),
    ("adaptation loss over 10 steps", losses.replace("loss ", ""), "falls"),
]
print(f"Device: {gpu}; models: `kioku pack --random-shapes tiny|default --seed 1`\n")
print(open(f"{work}/parity.md").read())
print(f"parity within tolerance: {parity_ok}\n")
print(f"| {shapes} shapes | figure | target |\n|---|---|---|")
for name, value, target in rows:
    print(f"| {name} | {value} | {target} |")
PY
[ "$parity_ok" = yes ] || fail "parity out of tolerance (table above)"
