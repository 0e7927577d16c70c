#!/usr/bin/env python3
"""Splits a kioku adapter directory into its Whisper half and its LLM half.

    scripts/split_adapter.py ADAPTER WHISPER_OUT LLM_OUT

Each half is an adapter directory of its own (PEFT layout, the same config
with only its modules), so `kioku eval --arm NAME=+WHISPER_OUT+LLM_OUT:S`
applies the LLM half at scale S on top of the Whisper half. The LLM's modules
carry Hugging Face's names in the file: `model.layers.*` and `lm_head`.
Plain Python: safetensors is an 8-byte header length, a JSON header, then
the tensors' bytes.
"""

import json
import os
import struct
import sys

PREFIX = "base_model.model."


def is_llm(key):
    return key.startswith(PREFIX + "model.layers.") or key.startswith(PREFIX + "lm_head.")


def write_half(out, config, header, data, metadata, keep):
    os.makedirs(out, exist_ok=True)
    kept, blobs, offset = {}, [], 0
    for key in sorted(k for k in header if keep(k)):
        start, end = header[key]["data_offsets"]
        blobs.append(data[start:end])
        kept[key] = dict(header[key], data_offsets=[offset, offset + end - start])
        offset += end - start
    modules = sorted({key[len(PREFIX):].rsplit(".lora_", 1)[0] for key in kept})
    if metadata is not None:
        kept["__metadata__"] = metadata
    encoded = json.dumps(kept).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(os.path.join(out, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(dict(config, target_modules=modules), f, indent=2)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    source, whisper_out, llm_out = sys.argv[1:]
    with open(os.path.join(source, "adapter_model.safetensors"), "rb") as f:
        raw = f.read()
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + length])
    metadata = header.pop("__metadata__", None)
    with open(os.path.join(source, "adapter_config.json")) as f:
        config = json.load(f)
    data = raw[8 + length:]
    write_half(whisper_out, config, header, data, metadata, lambda key: not is_llm(key))
    write_half(llm_out, config, header, data, metadata, is_llm)


if __name__ == "__main__":
    main()
