#!/usr/bin/env bash
# Builds the reference implementations kioku is benchmarked against
# (`make bench-anchors`): llama.cpp and whisper.cpp, each exactly as vendored
# in a pinned PyPI sdist, plus the reference models they run.
#
#   $KIOKU_CACHE/anchors/
#     sdist/          the two sdists, sha256-checked on every run
#     src/            their unpacked sources
#     llama.cpp/bin   llama-bench, llama-quantize, llama-completion  (.stamp when done)
#     whisper.cpp/bin whisper-cli, whisper-bench                  (.stamp when done)
#     venv/           numpy for the Whisper converter
#     SmolLM2-135M-Instruct.Q8_0.gguf   the pinned Q4_1 GGUF requantized to Q8_0
#     ggml-tiny.en.bin                  kioku's Whisper tiny.en in whisper.cpp's format
#     isa-flags       present only where ggml's AMX kernel faults: the cmake
#                     flags both are built with instead of -march=native
#
# Each step is skipped when its output exists, so a second run only checks
# hashes and runs llama.cpp on eight tokens.
#
#   build_anchors.sh          everything, for `make bench-anchors`
#   build_anchors.sh llama    llama.cpp and the Q8_0 GGUF only, for the ecosystem
#                             tests (`make test`): its converter and llama-completion
set -euo pipefail
ONLY=${1:-}

CACHE=${KIOKU_CACHE:-$HOME/.cache/kioku}
ROOT=$CACHE/anchors
HERE=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-2}

LLAMA_PY=llama-cpp-python==0.3.36     # vendors ggml-org/llama.cpp@0c1e57098
LLAMA_SDIST=llama_cpp_python-0.3.36.tar.gz
LLAMA_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
WHISPER_PY=pywhispercpp==1.5.1        # vendors whisper.cpp 1.8.5
WHISPER_SDIST=pywhispercpp-1.5.1.tar.gz
WHISPER_SHA=5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5
NUMPY=numpy==2.2.6

GGUF_Q4=$CACHE/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_Q8=$ROOT/SmolLM2-135M-Instruct.Q8_0.gguf
WHISPER_CT2=$CACHE/whisper-tiny.en
WHISPER_GGML=$ROOT/ggml-tiny.en.bin

mkdir -p "$ROOT/sdist" "$ROOT/src"

# Downloads an sdist (once) and refuses it unless its sha256 is the pinned one.
# `--no-binary <name>` rather than `:all:`: only the package itself must be
# the source release; its build requirements (cmake, ninja) may come as wheels,
# which pip needs anyway to read the sdist's metadata.
fetch_sdist() { # requirement file sha256
	local req=$1 file=$2 sha=$3 name=${1%%==*}
	if [ ! -f "$ROOT/sdist/$file" ]; then
		python3 -m pip download -q --no-deps --no-binary "$name" "$req" -d "$ROOT/sdist"
	fi
	echo "$sha  $ROOT/sdist/$file" | sha256sum -c --quiet - || {
		echo "sha256 mismatch for $file: delete it to fetch again" >&2
		exit 1
	}
	local dir=$ROOT/src/${file%.tar.gz}
	[ -d "$dir" ] || tar -xzf "$ROOT/sdist/$file" -C "$ROOT/src"
}

# Runs a command with its output to a log (compiler warnings are many); shows
# the log's end if it fails.
logged() { # log command...
	local log=$1
	shift
	"$@" >"$log" 2>&1 || {
		tail -40 "$log" >&2
		echo "failed: $* (log: $log)" >&2
		exit 1
	}
}

# The instruction sets the references are built for: this CPU's own
# (-march=native), unless an earlier run found ggml's AMX kernel faulting here
# (see probe_llama below) and wrote the flags without AMX to $ISA_FILE.
ISA_FILE=$ROOT/isa-flags
ISA=$(cat "$ISA_FILE" 2>/dev/null || echo -DGGML_NATIVE=ON)

# Each instruction set ggml knows that /proc/cpuinfo lists, AMX left out.
flags_without_amx() {
	local flags opts=(-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF) pair
	flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
	for pair in sse4_2:SSE42 f16c:F16C fma:FMA bmi2:BMI2 avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI avx512f:AVX512 \
		avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
		if [[ $flags == *" ${pair%%:*} "* ]]; then opts+=("-DGGML_${pair#*:}=ON"); else opts+=("-DGGML_${pair#*:}=OFF"); fi
	done
	echo "${opts[@]}"
}

# Common cmake flags: optimized, tuned to this CPU (what a user building it
# locally gets: $ISA, given with each call), CPU only, static so each binary
# stands alone.
CMAKE_COMMON=(-DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DBUILD_SHARED_LIBS=OFF)

build_llama() {
	local out=$ROOT/llama.cpp
	# Redone when the sources or the instruction sets change.
	[ "$(head -1 "$out/.stamp" 2>/dev/null)" = "$LLAMA_SHA $ISA" ] && return
	local srcdir=$ROOT/src/llama_cpp_python-0.3.36/vendor/llama.cpp
	local t0=$SECONDS
	echo "building llama.cpp (vendored in $LLAMA_PY) with -j$JOBS ..."
	# No tests, server, HTTPS or downloads: only the three tools used below.
	# shellcheck disable=SC2086 # ISA is a list of flags
	logged "$out.cmake.log" cmake -S "$srcdir" -B "$out/build" "${CMAKE_COMMON[@]}" $ISA \
		-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF
	logged "$out.build.log" cmake --build "$out/build" -j"$JOBS" --target llama-bench llama-quantize llama-completion
	mkdir -p "$out/bin"
	cp "$out/build/bin/llama-bench" "$out/build/bin/llama-quantize" "$out/build/bin/llama-completion" "$out/bin/"
	echo "llama.cpp built in $((SECONDS - t0)) s"
	printf '%s\n%s\n' "$LLAMA_SHA $ISA" "built in $((SECONDS - t0)) s" >"$out/.stamp"
}

build_whisper() {
	local out=$ROOT/whisper.cpp
	# Redone when the sources or the instruction sets change.
	[ "$(head -1 "$out/.stamp" 2>/dev/null)" = "$WHISPER_SHA $ISA" ] && return
	local srcdir=$ROOT/src/pywhispercpp-1.5.1/whisper.cpp
	local t0=$SECONDS
	echo "building whisper.cpp (vendored in $WHISPER_PY) with -j$JOBS ..."
	# shellcheck disable=SC2086 # ISA is a list of flags
	logged "$out.cmake.log" cmake -S "$srcdir" -B "$out/build" "${CMAKE_COMMON[@]}" $ISA \
		-DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_SERVER=OFF -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF
	logged "$out.build.log" cmake --build "$out/build" -j"$JOBS" --target whisper-cli whisper-bench
	mkdir -p "$out/bin"
	cp "$out/build/bin/whisper-cli" "$out/build/bin/whisper-bench" "$out/bin/"
	echo "whisper.cpp built in $((SECONDS - t0)) s"
	printf '%s\n%s\n' "$WHISPER_SHA $ISA" "built in $((SECONDS - t0)) s" >"$out/.stamp"
}

fetch_sdist "$LLAMA_PY" "$LLAMA_SDIST" "$LLAMA_SHA"
build_llama

# The pinned models kioku itself is packed from.
if [ ! -f "$GGUF_Q4" ] || [ ! -f "$WHISPER_CT2/model.bin" ]; then
	python3 "$HERE/scripts/fetch_models.py" whisper-tiny.en smollm2-135m-instruct
fi

# kioku holds the LLM's weights as Q8_0 blocks, so Q8_0 is llama.cpp running
# the same numbers. --allow-requantize: the pinned source is already Q4_1.
if [ ! -f "$GGUF_Q8" ]; then
	logged "$ROOT/quantize.log" "$ROOT/llama.cpp/bin/llama-quantize" --allow-requantize "$GGUF_Q4" "$GGUF_Q8.tmp" Q8_0
	mv "$GGUF_Q8.tmp" "$GGUF_Q8"
fi

# Some virtual machines list AMX in /proc/cpuinfo, yet the native build dies
# with SIGILL (status 132) in ggml's AMX kernel on its first Q8_0 product,
# though a minimal AMX program runs there (seen 2026-12-06). Eight prompt
# tokens find out; there llama.cpp is rebuilt without AMX, once, and
# whisper.cpp is built the same way.
probe_llama() {
	"$ROOT/llama.cpp/bin/llama-bench" -m "$GGUF_Q8" -p 8 -n 0 -r 1 -t "$JOBS" >"$ROOT/probe.log" 2>&1
}
status=0
probe_llama || status=$?
if [ $status -eq 132 ] && [ "$ISA" = -DGGML_NATIVE=ON ]; then
	echo "llama.cpp's AMX kernel faults on this CPU: building the references without AMX"
	ISA=$(flags_without_amx)
	build_llama
	status=0
	probe_llama || status=$?
	[ $status -eq 0 ] && echo "$ISA" >"$ISA_FILE"
fi
if [ $status -ne 0 ]; then
	tail -20 "$ROOT/probe.log" >&2
	echo "llama.cpp fails on $GGUF_Q8 (status $status; log: $ROOT/probe.log)" >&2
	exit 1
fi

if [ "$ONLY" = llama ]; then
	echo "llama.cpp ready in $ROOT"
	exit 0
fi
fetch_sdist "$WHISPER_PY" "$WHISPER_SDIST" "$WHISPER_SHA"
build_whisper

# numpy for the converter, in a venv of its own so the system Python is untouched.
if [ ! -x "$ROOT/venv/bin/python" ] || ! "$ROOT/venv/bin/python" -c 'import numpy' 2>/dev/null; then
	python3 -m venv "$ROOT/venv"
	"$ROOT/venv/bin/pip" install -q "$NUMPY"
fi
# --check: the header, mel filters and vocabulary must match those of
# whisper.cpp's own tiny.en (its test file holds just these, no weights).
if [ ! -f "$WHISPER_GGML" ]; then
	"$ROOT/venv/bin/python" "$HERE/scripts/ct2_to_ggml.py" "$WHISPER_CT2" "$WHISPER_GGML" \
		--check "$ROOT/src/pywhispercpp-1.5.1/whisper.cpp/models/for-tests-ggml-tiny.en.bin"
fi
echo "references ready in $ROOT"
