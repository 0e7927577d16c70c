"""Every kind of bad request gets a 4xx with an OpenAI-shaped error, and the
server keeps answering afterwards."""

import base64
import io
import struct
import wave

import httpx
import pytest
from conftest import API_KEY, EXAMPLE, wav_b64

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def wav_bytes(seconds, rate=16000, value=0):
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack("<h", value) * int(seconds * rate))
    return out.getvalue()


def chat(content=None, **extra):
    message = {"role": "user", "content": content if content is not None else "hi"}
    return {"messages": [message], "max_tokens": 4, **extra}


def audio_part(data, fmt="wav"):
    return [{"type": "input_audio", "input_audio": {"data": data, "format": fmt}}]


CHAT_CASES = {
    "malformed JSON": dict(content=b'{"messages": [', headers={"Content-Type": "application/json"}),
    "wrong content type": dict(content=b'{"messages": []}', headers={"Content-Type": "text/plain"}),
    "missing messages": dict(json={"model": "kioku"}),
    "messages not a list": dict(json={"messages": "hi"}),
    "empty messages": dict(json={"messages": []}),
    "last message not the user's": dict(json={"messages": [{"role": "assistant", "content": "hi"}]}),
    "unknown role": dict(json={"messages": [{"role": "robot", "content": "hi"}]}),
    "empty user message": dict(json={"messages": [{"role": "user", "content": ""}]}),
    "unknown content part": dict(json={"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
    "bad base64": dict(json=chat(audio_part("not base64 at all!!"))),
    "non-WAV audio": dict(json=chat(audio_part(base64.b64encode(b"ID3\x04 this is an mp3, honest").decode()))),
    "flac format": dict(json=chat(audio_part(wav_b64(EXAMPLE), fmt="flac"))),
    "text that claims to be mp3": dict(json=chat(audio_part(base64.b64encode(b"plain text").decode(), fmt="mp3"))),
    "truncated WAV": dict(json=chat(audio_part(base64.b64encode(EXAMPLE.read_bytes()[:30]).decode()))),
    "audio over the limit": dict(json=chat(audio_part(base64.b64encode(wav_bytes(31)).decode()))),
    "audio too short": dict(json=chat(audio_part(base64.b64encode(wav_bytes(0.005)).decode()))),
    "silence (no speech)": dict(json=chat(audio_part(base64.b64encode(wav_bytes(2)).decode()))),
    "oversized body": dict(json=chat("x" * (3 << 20))),
    "unknown adapter": dict(json=chat(adapters=[{"id": "mallory", "scale": 1}])),
    "adapter scale out of range": dict(json=chat(adapters=[{"id": "alice", "scale": 100}])),
    "adapter scale not a number": dict(json=chat(adapters=[{"id": "alice", "scale": "high"}])),
    "adapter named twice": dict(json=chat(adapters=[{"id": "alice"}, {"id": "alice"}])),
    "max_tokens 0": dict(json=chat(max_tokens=0)),
    "negative temperature": dict(json=chat(temperature=-1)),
    "top_p 0": dict(json=chat(top_p=0)),
    "n 2": dict(json=chat(n=2)),
    "unknown mode": dict(json=chat(mode="telepathy")),
}


@pytest.mark.parametrize("case", CHAT_CASES)
def test_a_bad_chat_request_gets_a_4xx_and_the_server_keeps_serving(server, case):
    kwargs = dict(CHAT_CASES[case])
    headers = {**HEADERS, **kwargs.pop("headers", {})}
    response = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=300, **kwargs)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    error = response.json()["error"]
    assert error["message"] and error["type"], error
    assert httpx.get(server.url + "/health").status_code == 200


def transcribe(**kwargs):
    return dict(files=kwargs.pop("files", {"file": ("q.wav", EXAMPLE.read_bytes(), "audio/wav")}), **kwargs)


TRANSCRIPTION_CASES = {
    "no file": dict(data={"model": "whisper-1"}),
    "neither WAV nor MP3": transcribe(files={"file": ("q.ogg", b"OggS\x00 not a wav", "audio/ogg")}),
    "a broken MP3": transcribe(files={"file": ("q.mp3", b"ID3\x04 not an mp3 after all", "audio/mpeg")}),
    "not multipart": dict(json={"file": "q.wav"}),
    "unknown response_format": transcribe(data={"response_format": "xml"}),
    "another language": transcribe(data={"language": "de"}),
    "sampled decoding": transcribe(data={"temperature": "0.7"}),
    "stream not a boolean": transcribe(data={"stream": "sometimes"}),
    "adapters not JSON": transcribe(data={"adapters": "alice"}),
    "file over the body limit": transcribe(files={"file": ("q.wav", wav_bytes(29, rate=48000), "audio/wav")}),
}


@pytest.mark.parametrize("case", TRANSCRIPTION_CASES)
def test_a_bad_transcription_request_gets_a_4xx(server, case):
    response = httpx.post(server.url + "/v1/audio/transcriptions", headers=HEADERS, timeout=300, **TRANSCRIPTION_CASES[case])
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert response.json()["error"]["message"]


def test_other_bad_requests_get_4xx(server):
    assert httpx.get(server.url + "/v1/nothing-here", headers=HEADERS).status_code == 404
    assert httpx.delete(server.url + "/v1/models", headers=HEADERS).status_code == 405
    assert httpx.post(server.url + "/adapters", headers=HEADERS, json={"id": "x", "path": "/no/such/dir"}).status_code == 400
    assert httpx.post(server.url + "/adapters", headers=HEADERS, json={"id": "x", "path": "/tmp", "colour": "red"}).status_code == 400
    assert httpx.post(server.url + "/adapters", headers=HEADERS, json={"id": "bad id", "path": "/tmp"}).status_code == 400
    assert httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": "Bearer nope"}, json=chat()).status_code == 401


def test_the_server_still_answers_after_all_of_it(server):
    response = httpx.post(server.url + "/v1/chat/completions", headers=HEADERS, timeout=300,
                          json={"messages": [{"role": "user", "content": "What is the capital of France?"}], "adapters": []})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "The capital of France is Paris."
