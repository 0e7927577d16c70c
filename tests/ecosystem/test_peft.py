"""kioku adapters and PEFT adapters are one format: PEFT loads what `kioku
adapt` trains with no renaming, kioku applies what PEFT trains, and both give
the same logits on the same weights.

The reference is Hugging Face transformers' SmolLM2 loaded from the pinned
GGUF (dequantized to f32), against kioku's dense f32 path on a model packed
from the same GGUF without re-quantizing (`--dtype f32 --quantize none`), so
both sides multiply exactly the same weights."""

import json
import shutil
import subprocess

import numpy as np
import peft
import pytest
import torch
import transformers

from conftest import MODEL, SMOLLM2_GGUF, WHISPER_CT2, kioku_logits, run_kioku

# Agreement required between kioku's and transformers' logits (max |Δ|, f32).
TOLERANCE = 1e-3
# What an adapter must change the logits by, for the agreement to mean something.
MIN_EFFECT = 1e-2
PROMPT = "The capital of France is Paris, and the capital of Italy is"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

ADAPT_TEXTS = [
    "Please turn on the kitchen lights.",
    "What is the weather like tomorrow morning?",
    "Set a timer for ten minutes.",
    "Remind me to call my sister tonight.",
]


def load_hf_llm():
    """A fresh transformers SmolLM2 in f32 (PEFT wraps models in place)."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name, dtype=torch.float32)
    return model.eval()


def hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def max_diff(a, b):
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("peft")


@pytest.fixture(scope="module")
def dense_model(work):
    """The default model's checkpoints, packed with f32 weights and no blocks."""
    path = work / "dense-f32.safetensors"
    run_kioku("pack", "--whisper", WHISPER_CT2, "--llm", SMOLLM2_GGUF, "--dtype", "f32", "--quantize", "none", "-o", path)
    return path


@pytest.fixture(scope="module")
def tokens():
    tokenizer = transformers.AutoTokenizer.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name)
    return tokenizer(PROMPT)["input_ids"]


@pytest.fixture(scope="module")
def base_logits(dense_model, tokens, work):
    """Without adapters both sides agree: the premise of every comparison here."""
    ours = kioku_logits(dense_model, tokens, work / "base.safetensors")
    theirs = hf_logits(load_hf_llm(), tokens)
    assert ours.shape == theirs.shape
    print(f"base: max |kioku - transformers| = {max_diff(ours, theirs):.2e}")
    assert max_diff(ours, theirs) <= TOLERANCE, f"base logits differ by {max_diff(ours, theirs)}"
    return ours


@pytest.fixture(scope="module")
def kioku_adapter(work):
    """An LLM adapter trained by `kioku adapt` on a few synthesized clips (a
    few strong steps without replay, so that it changes the logits)."""
    data = work / "speaker"
    data.mkdir()
    lines = []
    for i, text in enumerate(ADAPT_TEXTS):
        subprocess.run(["espeak-ng", "-v", "en+m3", "-s", "140", "-w", str(data / f"clip{i}.wav"), text], check=True)
        lines.append(f"clip{i}\t{text}")
    (data / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    out = work / "kioku-adapter"
    run_kioku("adapt", "--model", MODEL, "--device", "cpu", "--data", data, "--out", out, "--targets", "llm-attn",
              "--steps", "6", "--batch-size", "2", "--lr", "1e-2", "--seed", "1", "--no-replay", "--llm-turns", "all",
              "--spoken-target", "transcript", "--llm-scale", "1")
    return out


@pytest.fixture(scope="module")
def peft_adapter(work):
    """An adapter trained with PEFT on transformers' SmolLM2: a few AdamW
    steps of next-token loss on one sentence, saved by `save_pretrained`."""
    model = load_hf_llm()
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"],
                             task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, config)
    model.train()
    tokenizer = transformers.AutoTokenizer.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name)
    batch = tokenizer(["My favourite colour is teal, and my cat is called Miso."], return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"PEFT training did not learn: {losses}"
    out = work / "peft-adapter"
    model.save_pretrained(out)
    return out


def test_peft_loads_a_kioku_adapter_unmodified(kioku_adapter, dense_model, tokens, base_logits, work):
    config = json.loads((kioku_adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == SMOLLM2
    assert all(m.startswith("model.layers.") for m in config["target_modules"]), config["target_modules"]

    model = peft.PeftModel.from_pretrained(load_hf_llm(), kioku_adapter).eval()
    adapted = {name for name, module in model.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)}
    assert len(adapted) == len(config["target_modules"]) == 30 * 4
    # PEFT only warns about adapter tensors it cannot place: check that B was read.
    stored = peft.utils.load_peft_weights(str(kioku_adapter))
    q_b = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight.detach()
    assert torch.equal(q_b, stored["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])

    theirs = hf_logits(model, tokens)
    ours = kioku_logits(dense_model, tokens, work / "kioku-adapted.safetensors", adapters=[kioku_adapter])
    print(f"kioku adapter: effect {max_diff(ours, base_logits):.2e}, max |kioku - PEFT| = {max_diff(ours, theirs):.2e}")
    assert max_diff(ours, base_logits) > MIN_EFFECT, "the adapter changes nothing to compare"
    assert max_diff(ours, theirs) <= TOLERANCE, f"kioku and PEFT differ by {max_diff(ours, theirs)}"


def test_kioku_applies_a_peft_adapter(peft_adapter, dense_model, tokens, base_logits, work):
    model = peft.PeftModel.from_pretrained(load_hf_llm(), peft_adapter).eval()
    theirs = hf_logits(model, tokens)
    ours = kioku_logits(dense_model, tokens, work / "peft-adapted.safetensors", adapters=[peft_adapter])
    print(f"PEFT adapter: effect {max_diff(ours, base_logits):.2e}, max |kioku - PEFT| = {max_diff(ours, theirs):.2e}")
    assert max_diff(ours, base_logits) > MIN_EFFECT, "the adapter changes nothing to compare"
    assert max_diff(ours, theirs) <= TOLERANCE, f"kioku and PEFT differ by {max_diff(ours, theirs)}"

    # Baking it with `kioku merge` gives the same model.
    merged = work / "peft-merged.safetensors"
    run_kioku("merge", "--model", dense_model, "--adapter", peft_adapter, "-o", merged)
    baked = kioku_logits(merged, tokens, work / "peft-baked.safetensors")
    print(f"PEFT adapter merged: max |kioku - PEFT| = {max_diff(baked, theirs):.2e}")
    assert max_diff(baked, theirs) <= TOLERANCE, f"merged model and PEFT differ by {max_diff(baked, theirs)}"

    # And `ask` answers with it on the default (q8) model.
    answer = run_kioku("ask", "--model", MODEL, "--text", "What is the capital of France?", "--max-tokens", "8",
                       "--adapter", peft_adapter)
    assert answer.stdout.strip()


def test_a_peft_adapter_for_another_checkpoint_is_refused(peft_adapter, work):
    other = work / "other-base"
    shutil.copytree(peft_adapter, other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "Qwen/Qwen2.5-0.5B-Instruct"
    (other / "adapter_config.json").write_text(json.dumps(config))
    done = run_kioku("ask", "--model", MODEL, "--text", "Hi", "--adapter", other, check=False)
    assert done.returncode != 0
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1, error
    assert "trained on Qwen/Qwen2.5-0.5B-Instruct, but this model's llm is HuggingFaceTB/SmolLM2-135M-Instruct" in error
