"""32 concurrent mixed requests against `kioku serve --parallel 2`: typed
and spoken, cascade and end-to-end, two adapters at different scales,
streamed and not. Greedy decoding makes every answer a function of its
request alone, so each must equal the same request sent alone."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import API_KEY, wav_b64

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
MAX_TOKENS = 20


def request_specs(question_wavs):
    typed = ["What is the capital of France?", "Why is the sky blue?", "Name a fruit that is yellow."]
    adapter_sets = [[], [{"id": "alice", "scale": 1.0}], [{"id": "bob", "scale": 0.5}], [{"id": "alice", "scale": 0.5}, {"id": "bob", "scale": 1.0}]]
    specs = []
    for i in range(32):
        adapters = adapter_sets[i % 4]
        stream = i % 3 == 0
        if i % 2 == 0:
            content = typed[(i // 2) % len(typed)]
            specs.append({"messages": [{"role": "user", "content": content}], "adapters": adapters, "stream": stream})
        else:
            wav = list(question_wavs.values())[(i // 2) % len(question_wavs)]
            mode = "e2e" if (i // 2) % 2 else "cascade"
            audio = {"type": "input_audio", "input_audio": {"data": wav_b64(wav), "format": "wav"}}
            specs.append({"messages": [{"role": "user", "content": [audio]}], "adapters": adapters, "stream": stream, "mode": mode})
    return specs


def send(client, url, spec):
    """The answer text (with its transcript), whether streamed or not; raises on any error."""
    body = {"max_tokens": MAX_TOKENS, **spec}
    if not spec["stream"]:
        response = client.post(url, json=body, headers=HEADERS)
        response.raise_for_status()
        data = response.json()
        return data["choices"][0]["message"]["content"], data["transcript"]
    text, transcript, done = "", None, False
    with client.stream("POST", url, json=body, headers=HEADERS) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            assert "error" not in chunk, chunk
            text += chunk["choices"][0]["delta"].get("content") or ""
            if chunk["choices"][0]["finish_reason"]:
                transcript = chunk["transcript"]
    assert done, "the stream ended without [DONE]"
    return text.strip(), transcript


def test_concurrent_mixed_requests_equal_the_same_requests_alone(server, question_wavs):
    url = server.url + "/v1/chat/completions"
    specs = request_specs(question_wavs)
    with httpx.Client(timeout=900) as client:
        # Alone: one at a time; a request is the same whether streamed or not, so each distinct one runs once.
        key = lambda spec: json.dumps({k: v for k, v in spec.items() if k != "stream"}, sort_keys=True)
        alone = {}
        for spec in specs:
            if key(spec) not in alone:
                alone[key(spec)] = send(client, url, spec)
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            together = list(pool.map(lambda spec: send(client, url, spec), specs))
    mismatches = [(spec["messages"][0]["content"] if isinstance(spec["messages"][0]["content"], str) else spec.get("mode"),
                   spec["adapters"], got, alone[key(spec)]) for spec, got in zip(specs, together) if got != alone[key(spec)]]
    assert not mismatches, f"{len(mismatches)} of {len(specs)} answers changed under load: {mismatches}"
    # The adapters did act: some typed question is answered differently under different adapter sets.
    by_question = {}
    for spec in specs:
        if isinstance(spec["messages"][0]["content"], str):
            by_question.setdefault(spec["messages"][0]["content"], set()).add(alone[key(spec)][0])
    assert any(len(answers) > 1 for answers in by_question.values()), by_question
