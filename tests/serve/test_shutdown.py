"""A full queue answers 503 at once; SIGTERM lets the requests in flight
finish, then the server exits 0."""

import json
import threading

import httpx
from conftest import Server

LONG = {"messages": [{"role": "user", "content": "Tell me a long story about a dragon."}], "max_tokens": 48}


def test_a_full_queue_is_refused_and_sigterm_finishes_what_is_in_flight(workdir):
    server = Server(["--parallel", "1", "--queue", "0"], workdir)
    url = server.url + "/v1/chat/completions"
    chunks, first_chunk = [], threading.Event()

    def stream_long_answer():
        with httpx.Client(timeout=600) as client, client.stream("POST", url, json={**LONG, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line[len("data: "):])
                    first_chunk.set()

    reader = threading.Thread(target=stream_long_answer)
    reader.start()
    assert first_chunk.wait(300), "no answer started"
    busy = httpx.post(url, json=LONG, timeout=60)
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "server_overloaded", busy.text
    code = server.stop()
    reader.join(300)
    assert code == 0, server.log()
    assert chunks[-1] == "[DONE]", chunks[-3:]
    finish = [json.loads(c)["choices"][0]["finish_reason"] for c in chunks[:-1] if json.loads(c).get("choices")]
    assert finish[-1] in ("stop", "length"), "the answer in flight ran to its end"
    assert "finishing the requests in flight" in server.log()
