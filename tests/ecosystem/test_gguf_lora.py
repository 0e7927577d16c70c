"""`kioku export-adapter --format gguf` against llama.cpp itself: an LLM
adapter trained with `kioku adapt`, exported and loaded with llama.cpp's
`--lora-scaled`, changes llama.cpp's greedy answer exactly as `--adapter`
changes kioku's. A copy of the export that keeps kioku's q/k row order (no
permutation of B) does not, which shows the test sees that permutation.

llama.cpp runs an F32 GGUF of the weights kioku holds: kioku packs the pinned
Q4_1 GGUF as Q8_0 blocks, so the GGUF is the Q4_1 file requantized to Q8_0
(build_anchors.sh makes it) and then widened to F32. On it llama.cpp multiplies
in f32 like kioku's dense path. On the Q4_1 or Q8_0 files themselves
llama.cpp rounds activations to 8 bits for its dot products, and greedy
answers part from kioku's after some tokens (docs/ADAPTATION.md, "Exporting
adapters for llama.cpp", has the measured numbers)."""

import json
import re
import subprocess

import pytest
from gguf import GGUFReader, GGUFWriter
from safetensors import safe_open
from tokenizers import Tokenizer

from conftest import CACHE, LOGITS, MODEL, REPO, kioku_logits, run_kioku

ANCHORS = CACHE / "anchors"
LLAMA_BIN = ANCHORS / "llama.cpp" / "bin"
# The Q8_0 requantization of the pinned Q4_1 GGUF, made by build_anchors.sh.
SMOLLM2_Q8 = ANCHORS / "SmolLM2-135M-Instruct.Q8_0.gguf"

PROMPT = "<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n"
TOKENS = 16
SCALE = 1.0
# Sentences the adapter is trained on, in a slow, low espeak-ng voice.
ADAPT_TEXTS = [
    "Please turn on the kitchen lights.",
    "What is the weather like tomorrow morning?",
    "Set a timer for ten minutes.",
    "Remind me to call my sister tonight.",
]


@pytest.fixture(scope="module")
def llama_cpp():
    """llama.cpp as vendored in the pinned llama-cpp-python sdist, built by
    `scripts/build_anchors.sh llama` into the cache (`make test` runs it first;
    minutes the first time)."""
    if not (ANCHORS / "llama.cpp" / ".stamp").exists() or not SMOLLM2_Q8.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "build_anchors.sh"), "llama"], check=True)
    return LLAMA_BIN


@pytest.fixture(scope="module")
def base_gguf(llama_cpp, tmp_path_factory):
    """kioku's LLM weights as an F32 GGUF (see the module doc)."""
    out = tmp_path_factory.mktemp("gguf") / "SmolLM2-135M-Instruct.F32.gguf"
    subprocess.run([str(llama_cpp / "llama-quantize"), "--allow-requantize", str(SMOLLM2_Q8), str(out), "F32"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """An adapter on the LLM's attention, trained by `kioku adapt` with no
    replay (a few steps at a high rate, so that it changes the answer)."""
    work = tmp_path_factory.mktemp("adapter")
    data = work / "speaker"
    data.mkdir()
    for i, text in enumerate(ADAPT_TEXTS):
        subprocess.run(["espeak-ng", "-v", "en+m3", "-s", "140", "-w", str(data / f"clip{i}.wav"), text], check=True)
    (data / "transcripts.tsv").write_text("".join(f"clip{i}\t{text}\n" for i, text in enumerate(ADAPT_TEXTS)))
    out = work / "llm-attn"
    run_kioku("adapt", "--model", MODEL, "--device", "cpu", "--data", data, "--out", out, "--targets", "llm-attn",
              "--steps", "6", "--batch-size", "2", "--lr", "1e-2", "--seed", "1", "--no-replay", "--llm-turns", "all",
              "--spoken-target", "transcript", "--llm-scale", "1")
    return out


@pytest.fixture(scope="module")
def tokenizer():
    """The LLM's tokenizer, stored in the model file as the bytes of its JSON."""
    with safe_open(str(MODEL), "np") as f:
        json_text = f.get_tensor("tokenizer.llm").tobytes().decode()
        config = json.loads(f.metadata()["llm.config"])
    return Tokenizer.from_str(json_text), config["eos_token_ids"]


def kioku_greedy(prompt_ids, eos, out, adapters=()):
    """kioku's greedy continuation (dense path), one logits run per token."""
    ids = list(prompt_ids)
    for _ in range(TOKENS):
        token = int(kioku_logits(MODEL, ids, out, adapters)[-1].argmax())
        if token in eos:
            break
        ids.append(token)
    return ids[len(prompt_ids):]


def llama_greedy(llama_cpp, model, lora=None):
    """llama.cpp's greedy continuation of PROMPT as text, and the prompt's token ids as it read them."""
    cmd = [str(llama_cpp / "llama-completion"), "-m", str(model), "-p", PROMPT, "-n", str(TOKENS), "--temp", "0",
           "-no-cnv", "--no-display-prompt", "--no-warmup", "--verbose-prompt"]
    if lora:
        cmd += ["--lora-scaled", f"{lora}:{SCALE}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"llama-completion failed ({done.returncode}):\n{done.stderr[-3000:]}"
    prompt_ids = [int(t) for t in re.findall(r" I +(\d+) -> '", done.stderr)]
    return done.stdout.rstrip().removesuffix("[end of text]").rstrip(), prompt_ids


def agreeing(tokens, text, tokenizer):
    """How many of `tokens`, from the first, spell the start of `text`."""
    k = 0
    while k < len(tokens) and text.startswith(tokenizer.decode(tokens[: k + 1])):
        k += 1
    return k


def without_qk_permutation(exported, out):
    """A copy of a GGUF LoRA with the q/k B rows put back in kioku's order (halves per head)."""
    reader = GGUFReader(exported)
    heads = {"attn_q": 9, "attn_k": 3}  # SmolLM2-135M's query and key-value heads
    writer = GGUFWriter(out, "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(reader.fields["adapter.lora.alpha"].contents()))
    for t in reader.tensors:
        values = t.data.reshape([int(d) for d in reversed(t.shape)])
        kind = t.name.split(".")[2]
        if t.name.endswith(".lora_b") and kind in heads:
            rows, rank = values.shape
            values = values.reshape(heads[kind], rows // heads[kind] // 2, 2, rank).swapaxes(1, 2).reshape(rows, rank)
        writer.add_tensor(t.name, values.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_exported_adapter_changes_llama_cpp_answer_as_it_changes_kioku(llama_cpp, base_gguf, adapter, tokenizer, tmp_path):
    tokenizer, eos = tokenizer
    exported = tmp_path / "adapter.gguf"
    run_kioku("export-adapter", adapter, "--model", MODEL, "--format", "gguf", "-o", exported)

    prompt_ids = tokenizer.encode(PROMPT, add_special_tokens=False).ids
    kioku_base = kioku_greedy(prompt_ids, eos, tmp_path / "logits.safetensors")
    kioku_adapted = kioku_greedy(prompt_ids, eos, tmp_path / "logits.safetensors", [f"{adapter}:{SCALE}"])
    llama_base, llama_prompt_ids = llama_greedy(llama_cpp, base_gguf)
    llama_adapted, _ = llama_greedy(llama_cpp, base_gguf, exported)
    llama_unpermuted, _ = llama_greedy(llama_cpp, base_gguf, without_qk_permutation(exported, tmp_path / "unpermuted.gguf"))

    report = (f"kioku base:    {tokenizer.decode(kioku_base)!r}\nkioku adapted: {tokenizer.decode(kioku_adapted)!r}\n"
              f"llama base:    {llama_base!r}\nllama adapted: {llama_adapted!r}\nllama, q/k unpermuted: {llama_unpermuted!r}")
    assert llama_prompt_ids == prompt_ids, "llama.cpp must read the prompt as the same tokens"
    assert len(kioku_adapted) == TOKENS and kioku_adapted[:4] != kioku_base[:4], f"the adapter must change the answer early\n{report}"
    assert agreeing(kioku_base, llama_base, tokenizer) == len(kioku_base), report
    assert agreeing(kioku_adapted, llama_adapted, tokenizer) == TOKENS, report
    assert agreeing(kioku_adapted, llama_unpermuted, tokenizer) < TOKENS, report
