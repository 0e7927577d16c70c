"""LLM families beyond SmolLM2: Qwen2 (q/k/v biases, NEOX rope, its chat
template) and Llama 3 rope scaling, each from a tiny random checkpoint that
transformers builds here. kioku imports it from the Hugging Face directory and
from the GGUF file llama.cpp's converter writes, and its dense f32 logits must
match transformers' forward pass within TOLERANCE. A packed tiny Qwen2 then
goes through `kioku ask`, `adapt` and `merge`."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from conftest import CACHE, REPO, WHISPER_CT2, kioku_logits, run_kioku

# llama.cpp's HF -> GGUF converter, as vendored in the pinned llama-cpp-python
# sdist that `scripts/build_anchors.sh llama` unpacks (`make test` runs it).
LLAMA_CPP = CACHE / "anchors" / "src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
TOLERANCE = 1e-4
SEQ = 64
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# Qwen2.5-Instruct's chat template, as its tokenizer_config.json ships it.
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

TRAINING_TEXT = [
    "What is the capital of France? The capital of France is Paris.",
    "Name a primary colour. Red is a primary colour, and so are blue and yellow.",
    "The quick brown fox jumps over the lazy dog 12 times in 2024.",
    "You are a helpful assistant. Answer the question in one short sentence.",
    # Chunks that only Qwen2's split makes: punctuation with the newlines after it.
    "Is it?\nYes.\nIs it not?\n\nNo.\n",
]


def tiny_tokenizer():
    """A byte-level BPE with Qwen2's split and special tokens (the real
    tokenizers are not available offline); a few hundred tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAINING_TEXT * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def perturb(model, seed):
    """Random values for what transformers initialises to constants (biases
    zero, norms one), so that a mapping that dropped them would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "norm" in name:
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)


def save_checkpoint(model, tokenizer, directory):
    """Writes a HF checkpoint directory as released chat models have it."""
    model.save_pretrained(directory)
    tokenizer.chat_template = QWEN25_TEMPLATE
    tokenizer.save_pretrained(directory)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    GenerationConfig(eos_token_id=ids, bos_token_id=ids[1]).save_pretrained(directory)
    return directory


def build(family, directory, rope_scaling=None, tie=True, seed=0):
    """A seeded random f32 checkpoint of `family` (`qwen2` or `llama`; hidden
    64, 2 layers, 4 query heads sharing 2 K/V heads) saved in `directory`;
    returns the directory and the model."""
    tokenizer = tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=10_000.0,
        tie_word_embeddings=tie,
        initializer_range=0.1,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    torch.manual_seed(seed)
    if family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        config = LlamaConfig(**common)
        if rope_scaling:
            config.rope_parameters = {"rope_type": "llama3", "rope_theta": 10_000.0, **rope_scaling}
        model = LlamaForCausalLM(config)
    model = model.float().eval()
    perturb(model, seed)
    return save_checkpoint(model, tokenizer, directory), model


def hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def to_gguf(hf_dir, out, pre):
    """llama.cpp's converter at f32. It names the tokenizer's split regex by
    hashing the tokenizer's output on a probe text, which only known released
    tokenizers match: this one is declared to be `pre`. Qwen2's converter tries
    a sentencepiece `tokenizer.model` first, importing sentencepiece (absent
    from the test venv) before it finds there is none: it is told so directly."""
    if not (LLAMA_CPP / "convert_hf_to_gguf.py").exists():
        pytest.fail(f"llama.cpp's converter is not unpacked at {LLAMA_CPP}: run `bash scripts/build_anchors.sh llama`")
    code = (
        "import runpy, sys\n"
        "from conversion import base\n"
        "def no_sentencepiece(self):\n"
        "    raise FileNotFoundError('no tokenizer.model')\n"
        "base.TextModel._create_vocab_sentencepiece = no_sentencepiece\n"
        f"base.TextModel.get_vocab_base_pre = lambda self, tokenizer: {pre!r}\n"
        f"sys.argv = ['convert_hf_to_gguf.py', {str(hf_dir)!r}, '--outtype', 'f32', '--outfile', {str(out)!r}]\n"
        f"runpy.run_path({str(LLAMA_CPP / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{LLAMA_CPP / 'gguf-py'}{os.pathsep}{LLAMA_CPP}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def pack(llm, out, exact=True, projector=None):
    """A kioku model from the real Whisper tiny.en and `llm`; `exact` keeps
    every weight f32 and dense, for comparisons at TOLERANCE."""
    args = ["--dtype", "f32", "--quantize", "none"] if exact else []
    args += ["--projector", projector] if projector else []
    run_kioku("pack", "--whisper", WHISPER_CT2, "--llm", llm, "-o", out, *args)
    return out


def tokens_for(model, seed=1):
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, SEQ).tolist()


def assert_matches(model_file, reference, tokens, tmp_path, label):
    ours = kioku_logits(model_file, tokens, tmp_path / f"{label}.safetensors")
    diff = float(np.abs(ours - reference).max())
    print(f"{label}: max |Δlogit| {diff:.2e} (logits up to {np.abs(reference).max():.2f})")
    assert diff < TOLERANCE, f"{label}: kioku's logits differ from transformers' by {diff}"


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return build("qwen2", tmp_path_factory.mktemp("qwen2-hf"))


# Llama 3 scaling over head_dim 16 (8 frequencies, wavelengths 6.3 to 19869
# positions): with an original context of 64, frequency 0 is kept, 1 and 2 are
# blended and 3-7 are divided by 8, so all three branches act within SEQ tokens.
LLAMA3_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


@pytest.fixture(scope="module")
def llama3(tmp_path_factory):
    return build("llama", tmp_path_factory.mktemp("llama3-hf"), rope_scaling=LLAMA3_SCALING, tie=False)


def test_qwen2_from_a_hf_directory_matches_transformers(qwen2, tmp_path):
    directory, model = qwen2
    tokens = tokens_for(model)
    assert_matches(pack(directory, tmp_path / "qwen2.safetensors"), hf_logits(model, tokens), tokens, tmp_path, "qwen2-hf")


def test_qwen2_from_gguf_matches_transformers(qwen2, tmp_path):
    directory, model = qwen2
    gguf_file = to_gguf(directory, tmp_path / "qwen2.gguf", "qwen2")
    tokens = tokens_for(model)
    model_file = pack(gguf_file, tmp_path / "qwen2.safetensors")
    assert_matches(model_file, hf_logits(model, tokens), tokens, tmp_path, "qwen2-gguf")
    # The tokenizer kioku rebuilds from the GGUF metadata splits like the
    # original (GPT-2's split, the fallback, would not make `?\n\n` one chunk).
    with safe_open(str(model_file), "np") as f:
        header = f.metadata()
        rebuilt = Tokenizer.from_str(f.get_tensor("tokenizer.llm").tobytes().decode())
    original = Tokenizer.from_file(str(directory / "tokenizer.json"))
    text = "<|im_start|>user\nIt's 2024: 12345 apples, don't you think?\n\n  Done.<|im_end|>"
    assert rebuilt.encode(text).ids == original.encode(text).ids
    ends = {original.token_to_id(t) for t in ("<|im_end|>", "<|endoftext|>")}
    assert set(json.loads(header["llm.config"])["eos_token_ids"]) == ends


def test_llama3_rope_scaling_from_gguf_and_hf_matches_transformers(llama3, tmp_path):
    directory, model = llama3
    tokens = tokens_for(model)
    reference = hf_logits(model, tokens)
    # The scaling matters at these positions: the same weights without it
    # give logits far outside the tolerance.
    unscaled = LlamaForCausalLM(LlamaConfig(**{**model.config.to_dict(), "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0}}))
    unscaled.load_state_dict(model.state_dict())
    effect = float(np.abs(hf_logits(unscaled.float().eval(), tokens) - reference).max())
    print(f"llama3 scaling changes the logits by up to {effect:.2e}")
    assert effect > 100 * TOLERANCE

    gguf_file = to_gguf(directory, tmp_path / "llama3.gguf", "llama-bpe")
    assert_matches(pack(gguf_file, tmp_path / "llama3-gguf.safetensors"), reference, tokens, tmp_path, "llama3-gguf")
    assert_matches(pack(directory, tmp_path / "llama3-hf.safetensors"), reference, tokens, tmp_path, "llama3-hf")


# Whisper tiny's width, which the projector reads.
WHISPER_TINY_DIM = 384
QUESTION = "What is the capital of France?"


def random_projector(path, llm_dim):
    """A random projector, so that spoken clips reach the LLM and `kioku
    adapt` trains LLM adapters on them."""
    config = {"stack_factor": 8, "input_dim": WHISPER_TINY_DIM, "hidden_dim": 2 * llm_dim, "output_dim": llm_dim}
    rng = np.random.default_rng(3)
    stacked = config["stack_factor"] * config["input_dim"]
    tensors = {
        "projector.ln_pre.weight": np.ones(stacked, np.float32),
        "projector.linear_1.weight": (rng.standard_normal((config["hidden_dim"], stacked)) * 0.02).astype(np.float32),
        "projector.ln_mid.weight": np.ones(llm_dim, np.float32),
        "projector.linear_2.weight": (rng.standard_normal((llm_dim, llm_dim)) * 0.1).astype(np.float32),
    }
    save_file(tensors, str(path), metadata={"projector.config": json.dumps(config)})
    return path


@pytest.fixture(scope="module")
def packed_qwen2(qwen2, tmp_path_factory):
    """The tiny Qwen2 packed twice with a projector: as `kioku pack` does by
    default (f16, q8_0 projections: the packed kernels, biases included) and
    exactly (f32, dense)."""
    directory, model = qwen2
    tmp = tmp_path_factory.mktemp("qwen2-packed")
    projector = random_projector(tmp / "projector.safetensors", model.config.hidden_size)
    default = pack(directory, tmp / "default.safetensors", exact=False, projector=projector)
    exact = pack(directory, tmp / "exact.safetensors", projector=projector)
    return default, exact, model


@pytest.fixture(scope="module")
def qwen2_adapter(packed_qwen2, tmp_path_factory):
    """LoRA on every LLM projection, from two spoken clips."""
    _, exact, _ = packed_qwen2
    tmp = tmp_path_factory.mktemp("qwen2-adapt")
    data = tmp / "data"
    data.mkdir()
    for name in ("a", "b"):
        shutil.copy(REPO / "examples" / "what-is-the-capital-of-france.wav", data / f"{name}.wav")
    (data / "transcripts.tsv").write_text("".join(f"{name}\t{QUESTION}\n" for name in ("a", "b")))
    out = tmp / "adapter"
    run_kioku("adapt", "--model", exact, "--data", data, "--out", out, "--targets", "llm-all",
              "--steps", "2", "--batch-size", "2", "--no-replay", "--lr", "0.05", "--seed", "1", "--llm-turns", "all",
              "--spoken-target", "transcript", "--llm-scale", "1")
    return out


def test_packed_kernels_with_biases_match_transformers(packed_qwen2, tmp_path):
    default, _, model = packed_qwen2
    tokens = tokens_for(model)
    reference = hf_logits(model, tokens)
    ours = kioku_logits(default, tokens, tmp_path / "packed.safetensors", dense=False)
    diff = float(np.abs(ours - reference).max())
    print(f"qwen2 packed (f16, q8_0): max |Δlogit| {diff:.2e}")
    assert diff < 0.05 * np.abs(reference).max(), f"the packed kernels differ from transformers by {diff}"


def test_ask_answers_with_a_packed_qwen2(packed_qwen2, qwen2_adapter):
    default, _, _ = packed_qwen2
    for extra in ([], ["--adapter", qwen2_adapter]):
        done = run_kioku("ask", "--model", default, "--json", "--text", QUESTION, "--max-tokens", "8", *extra)
        answer = json.loads(done.stdout)["answer"]
        assert isinstance(answer, str) and "<|im_start|>" not in answer, answer


def test_adapt_trains_every_llm_projection_of_qwen2(qwen2_adapter):
    config = json.loads((qwen2_adapter / "adapter_config.json").read_text())
    tensors = load_file(str(qwen2_adapter / "adapter_model.safetensors"))
    trained = {name.split(".lora_B")[0].rsplit(".", 1)[-1] for name, t in tensors.items() if ".lora_B" in name and np.abs(t).max() > 0}
    assert trained == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, (config, sorted(tensors))


def test_merge_bakes_the_adapter_into_a_qwen2(packed_qwen2, qwen2_adapter, tmp_path):
    _, exact, model = packed_qwen2
    merged = tmp_path / "merged.safetensors"
    run_kioku("merge", "--model", exact, "--adapter", qwen2_adapter, "-o", merged)
    tokens = tokens_for(model)
    base = kioku_logits(exact, tokens, tmp_path / "base.safetensors")
    applied = kioku_logits(exact, tokens, tmp_path / "applied.safetensors", adapters=[qwen2_adapter])
    baked = kioku_logits(merged, tokens, tmp_path / "baked.safetensors")
    change, diff = float(np.abs(applied - base).max()), float(np.abs(baked - applied).max())
    print(f"qwen2 merge: the adapter changes the logits by up to {change:.2e}; baked vs applied {diff:.2e}")
    assert change > 100 * TOLERANCE
    assert diff < TOLERANCE
    run_kioku("ask", "--model", merged, "--text", QUESTION, "--max-tokens", "4")
