"""`kioku serve` through the official `openai` Python package and curl."""

import json
import subprocess

import httpx
import openai
import pytest
from conftest import API_KEY, EXAMPLE, EXAMPLE_MP3, wav_b64

FRANCE_TRANSCRIPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=600)


def audio_message(path, text=None):
    parts = [{"type": "input_audio", "input_audio": {"data": wav_b64(path), "format": path.suffix[1:]}}]
    if text:
        parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


def base(**extra):
    """extra_body for the base model: no adapters, whatever the server loaded."""
    return {"adapters": [], **extra}


# A multipart form carries kioku's `adapters` as JSON text (the client drops an empty list).
BASE_FORM = {"adapters": "[]"}


def test_the_model_list_names_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["kioku-tiny-en"]


def test_a_transcription_in_every_format(client):
    with open(EXAMPLE, "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f, extra_body=BASE_FORM).text == FRANCE_TRANSCRIPT
    with open(EXAMPLE, "rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json", extra_body=BASE_FORM)
    assert verbose.text == FRANCE_TRANSCRIPT and abs(verbose.duration - 2.78) < 0.01
    assert [s.text for s in verbose.segments] == [FRANCE_TRANSCRIPT] and verbose.segments[0].end == pytest.approx(2.78, abs=0.01)
    with open(EXAMPLE, "rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt", extra_body=BASE_FORM)
    assert srt == f"1\n00:00:00,000 --> 00:00:02,780\n{FRANCE_TRANSCRIPT}\n\n"
    with open(EXAMPLE, "rb") as f:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt", extra_body=BASE_FORM)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.780\n")


def test_mp3_is_heard_as_the_wav_is(client):
    with open(EXAMPLE_MP3, "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f, extra_body=BASE_FORM).text == FRANCE_TRANSCRIPT
    answer = client.chat.completions.create(model="kioku", messages=[audio_message(EXAMPLE_MP3)], extra_body=base())
    assert answer.model_extra["transcript"] == FRANCE_TRANSCRIPT
    assert answer.choices[0].message.content == "The capital of France is Paris."


def test_a_prompt_conditions_the_transcription(client):
    with open(EXAMPLE, "rb") as f:
        lower = client.audio.transcriptions.create(model="whisper-1", file=f, prompt="what is the capital of france", extra_body=BASE_FORM)
    assert lower.text == "what is the capital of france?"


def test_a_streamed_transcription_sends_deltas_then_the_whole_text(client):
    with open(EXAMPLE, "rb") as f:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True, extra_body=BASE_FORM))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e.text for e in events if e.type == "transcript.text.done"]
    assert "".join(deltas) == FRANCE_TRANSCRIPT and done == [FRANCE_TRANSCRIPT]


def test_a_spoken_question_is_answered_in_both_modes(client):
    cascade = client.chat.completions.create(model="kioku", messages=[audio_message(EXAMPLE)], extra_body=base())
    assert cascade.choices[0].message.content == "The capital of France is Paris."
    assert cascade.model_extra["transcript"] == FRANCE_TRANSCRIPT
    assert cascade.usage.completion_tokens > 0 and cascade.usage.prompt_tokens > 0
    assert cascade.choices[0].finish_reason == "stop"
    e2e = client.chat.completions.create(model="kioku", messages=[audio_message(EXAMPLE)], extra_body=base(mode="e2e"))
    assert "Paris" in e2e.choices[0].message.content
    assert e2e.model_extra["transcript"] is None


def test_a_streamed_chat_equals_the_whole_answer(client):
    messages = [{"role": "user", "content": "Name three colours of the rainbow."}]
    whole = client.chat.completions.create(model="kioku", messages=messages, max_tokens=24, extra_body=base())
    chunks = list(client.chat.completions.create(model="kioku", messages=messages, max_tokens=24, stream=True,
                                                 stream_options={"include_usage": True}, extra_body=base()))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stop_strings_end_the_answer_before_them(client):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    stopped = client.chat.completions.create(model="kioku", messages=messages, stop=[" Paris"], extra_body=base())
    assert stopped.choices[0].message.content == "The capital of France is"
    assert stopped.choices[0].finish_reason == "stop"


def test_history_reaches_the_model_and_a_spoken_turn_counts_as_its_transcript(client):
    remember = [{"role": "user", "content": "Remember the number 42."},
                {"role": "assistant", "content": "OK, I will remember the number 42."}]
    question = {"role": "user", "content": "Which number did I ask you to remember?"}
    with_history = client.chat.completions.create(model="kioku", messages=remember + [question], max_tokens=24, extra_body=base())
    alone = client.chat.completions.create(model="kioku", messages=[question], max_tokens=24, extra_body=base())
    assert "42" in with_history.choices[0].message.content and "42" not in alone.choices[0].message.content
    follow_up = {"role": "user", "content": "And what is its largest city?"}
    answered = {"role": "assistant", "content": "The capital of France is Paris."}
    spoken = client.chat.completions.create(model="kioku", messages=[audio_message(EXAMPLE), answered, follow_up], extra_body=base())
    typed = client.chat.completions.create(
        model="kioku", messages=[{"role": "user", "content": FRANCE_TRANSCRIPT}, answered, follow_up], extra_body=base())
    assert spoken.choices[0].message.content == typed.choices[0].message.content
    assert spoken.usage.prompt_tokens == typed.usage.prompt_tokens


def test_adapters_are_listed_change_answers_per_request_and_load_at_run_time(server, client, adapters):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    listed = httpx.get(server.url + "/adapters", headers=headers).json()["data"]
    assert [(a["id"], a["scale"]) for a in listed] == [("alice", 1.0), ("bob", 0.5)]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = lambda **extra: client.chat.completions.create(model="kioku", messages=messages, max_tokens=24, extra_body=extra).choices[0].message.content
    plain = answer(adapters=[])
    assert answer(adapters=[{"id": "alice", "scale": 1.0}]) != plain, "a trained LLM adapter changes the answer"
    assert answer(adapters=[{"id": "alice", "scale": 0.0}]) == plain, "scale 0 is the base model"
    assert answer() == answer(adapters=[{"id": "alice", "scale": 1.0}, {"id": "bob", "scale": 0.5}]), "no list: every adapter at its loaded scale"
    loaded = httpx.post(server.url + "/adapters", headers=headers, json={"id": "carol", "path": str(adapters["alice"]), "scale": 1.0})
    assert loaded.status_code == 201, loaded.text
    assert answer(adapters=[{"id": "carol"}]) == answer(adapters=[{"id": "alice"}])
    again = httpx.post(server.url + "/adapters", headers=headers, json={"id": "carol", "path": str(adapters["alice"])})
    assert again.status_code == 409


def test_the_api_key_is_required(server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200


def curl(*args):
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {API_KEY}", *args], check=True, capture_output=True, text=True)
    return out.stdout


def test_curl_transcribes_and_chats(server):
    text = curl(f"{server.url}/v1/audio/transcriptions", "-F", f"file=@{EXAMPLE}", "-F", "response_format=text", "-F", "adapters=[]")
    assert text == FRANCE_TRANSCRIPT + "\n"
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "adapters": []}
    answer = json.loads(curl(f"{server.url}/v1/chat/completions", "-H", "Content-Type: application/json", "-d", json.dumps(body)))
    assert answer["choices"][0]["message"]["content"] == "The capital of France is Paris."
