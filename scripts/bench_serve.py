#!/usr/bin/env python3
"""Benchmark of `kioku serve` (run by `make bench-serve`; not a test).

1. Server overhead: the same typed request, sent one at a time, N times.
   Overhead = client-measured wall time minus the library's own total
   (`timings_ms.total` in the response): HTTP, JSON, queueing, threads.
2. Memory: peak RSS of a server with --parallel 4 after 4 concurrent mixed
   requests, against the peak RSS of `kioku ask` answering one question
   (one loaded model), as (server - one model) / 4 per slot.
"""

import base64
import json
import os
import pathlib
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

REPO = pathlib.Path(__file__).resolve().parents[1]
KIOKU = str(REPO / "target" / "release" / "kioku")
MODEL = str(REPO / "models" / "kioku-tiny-en.safetensors")
EXAMPLE = REPO / "examples" / "what-is-the-capital-of-france.wav"
RUNS = int(os.environ.get("RUNS", "30"))


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)


def start(args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([KIOKU, "serve", "--model", MODEL, "--device", "cpu", "--port", str(port), *args], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.1)
    sys.exit("kioku serve did not start")


def peak_rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


def main():
    # First, while it is the only child waited for: RUSAGE_CHILDREN's peak is its own.
    subprocess.run([KIOKU, "ask", "--model", MODEL, "--device", "cpu", str(EXAMPLE)], check=True, stdout=subprocess.DEVNULL)
    one_model = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    process, url = start([])
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 8}
    post(url + "/v1/chat/completions", body)
    overheads, totals = [], []
    for _ in range(RUNS):
        t = time.perf_counter()
        answer = post(url + "/v1/chat/completions", body)
        wall = (time.perf_counter() - t) * 1e3
        overheads.append(wall - answer["timings_ms"]["total"])
        totals.append(answer["timings_ms"]["total"])
    process.send_signal(signal.SIGTERM)
    process.wait()

    process, url = start(["--parallel", "4"])
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(EXAMPLE.read_bytes()).decode(), "format": "wav"}}
    mixed = [
        {"messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 32},
        {"messages": [{"role": "user", "content": [audio]}], "max_tokens": 32},
        {"messages": [{"role": "user", "content": [audio]}], "max_tokens": 32, "mode": "e2e"},
        {"messages": [{"role": "user", "content": "Name three rivers."}], "max_tokens": 32, "stream": False},
    ]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda b: post(url + "/v1/chat/completions", b), mixed))
    server_rss = peak_rss_mib(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait()

    print(f"| figure | value |\n|---|---|")
    print(f"| server overhead per request, median of {RUNS} (min, max) | {statistics.median(overheads):.2f} ms ({min(overheads):.2f}, {max(overheads):.2f}) |")
    print(f"| library time of that request, median | {statistics.median(totals):.1f} ms |")
    print(f"| peak RSS, `kioku ask` (one model) | {one_model:.0f} MiB |")
    print(f"| peak RSS, `kioku serve --parallel 4` after 4 concurrent requests | {server_rss:.0f} MiB |")
    print(f"| per slot above one model | {(server_rss - one_model) / 4:.1f} MiB |")


if __name__ == "__main__":
    main()
