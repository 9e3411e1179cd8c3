"""Server-sent events, client disconnects, queueing, and the open endpoints (/health, /ready, /metrics)."""

import json
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import Server

QUESTION = "What is the capital of France?"


def sse_events(response):
    """The `data:` payloads of an SSE response, checking the framing: each event is one data line and a blank line."""
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    body = response.content.decode()
    assert body.endswith("\n\n")
    events = body.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), body
    return [e[len("data: "):] for e in events]


def test_chat_stream_shape_and_content(server, client, model_id):
    body = {"model": model_id, "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
            "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}}
    payloads = sse_events(server.post("/v1/chat/completions", body))
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model_id for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first, *middle, last_choice, usage_chunk = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"][0]["finish_reason"] is None and c["usage"] is None for c in [first, *middle])
    assert last_choice["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage_chunk["choices"] == []
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])

    plain = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                           temperature=0, max_tokens=12)
    assert streamed == plain.choices[0].message.content
    # Token counts agree; the second request may find the prompt's first blocks in the prefix cache.
    usage, plain_usage = dict(usage_chunk["usage"]), plain.usage.model_dump(exclude_none=True)
    assert usage.pop("prompt_tokens_details")["cached_tokens"] <= plain_usage.pop("prompt_tokens_details")["cached_tokens"]
    assert usage == plain_usage
    assert last_choice["choices"][0]["finish_reason"] == plain.choices[0].finish_reason


def test_chat_stream_through_openai_client(client, model_id):
    stream = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                            temperature=0, max_tokens=10, stream=True, n=2, logprobs=True)
    text = {0: "", 1: ""}
    tokens = {0: 0, 1: 0}
    finish = {}
    for chunk in stream:
        assert chunk.usage is None
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
            if c.logprobs and c.logprobs.content:
                tokens[c.index] += len(c.logprobs.content)
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    plain = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                           temperature=0, max_tokens=10)
    assert text[0] == text[1] == plain.choices[0].message.content
    assert tokens[0] == tokens[1] == plain.usage.completion_tokens
    assert finish == {0: plain.choices[0].finish_reason, 1: plain.choices[0].finish_reason}


def test_completion_stream(client, model_id):
    chunks = list(client.completions.create(model=model_id, prompt="The capital of France is", temperature=0,
                                            max_tokens=10, stream=True, stream_options={"include_usage": True}))
    plain = client.completions.create(model=model_id, prompt="The capital of France is", temperature=0, max_tokens=10)
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_completion_stream_with_echo_and_logprobs(client, model_id):
    args = dict(model=model_id, prompt="The capital of France is", temperature=0, max_tokens=4, echo=True, logprobs=1)
    chunks = list(client.completions.create(stream=True, **args))
    plain = client.completions.create(**args).choices[0]
    assert "".join(c.choices[0].text for c in chunks) == plain.text
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    offsets = [o for c in chunks if c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset]
    assert tokens == plain.logprobs.tokens
    assert offsets == plain.logprobs.text_offset


def read_sse_data(sock_file, count):
    """Reads `count` data events from a raw HTTP/1.1 response (chunked transfer encoding)."""
    seen = []
    while len(seen) < count:
        line = sock_file.readline()
        assert line, "connection closed early"
        if line.startswith(b"data: "):
            seen.append(line[len(b"data: "):].strip())
    return seen


def open_stream(server, body):
    """Sends a streaming request on a raw socket, so the test decides exactly when the client goes away."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    auth = f"Authorization: Bearer {server.api_key}\r\n" if server.api_key else ""
    sock.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    return sock, f


def wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_disconnect_mid_stream_stops_the_sequence(server, model_id):
    before = server.metrics()
    max_tokens = 4000
    sock, f = open_stream(server, {
        "model": model_id, "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0, "stream": True})
    read_sse_data(f, 4)  # the role chunk and three content chunks
    assert server.metrics()["swiftlet_running_sequences"] == 1
    f.close()
    sock.close()

    after = wait_for(lambda: (m := server.metrics())["swiftlet_running_sequences"] == 0 and m, "the sequence to stop")
    assert after["swiftlet_sequences_cancelled_total"] == before.get("swiftlet_sequences_cancelled_total", 0) + 1
    generated = after["swiftlet_generated_tokens_total"] - before.get("swiftlet_generated_tokens_total", 0)
    assert 3 <= generated < max_tokens
    # The server is still fine.
    r = server.post("/v1/chat/completions", {"model": model_id, "messages": [{"role": "user", "content": "Hi"}],
                                             "max_tokens": 2})
    assert r.status_code == 200


def test_full_queue_gives_429_with_retry_after(model_id):
    # One sequence at a time, so that the second request really waits (the batching engine would run it at once).
    s = Server("--max-queue", "1", "--max-sequences", "1")
    try:
        long = {"model": model_id, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 4000,
                "ignore_eos": True, "stream": True}
        sock, f = open_stream(s, long)
        read_sse_data(f, 2)  # generating now: the queue is empty

        waiting_result = {}
        waiter = threading.Thread(target=lambda: waiting_result.update(
            r=s.post("/v1/completions", {"model": model_id, "prompt": "Hello", "max_tokens": 2})))
        waiter.start()
        wait_for(lambda: s.metrics()["swiftlet_queue_waiting_sequences"] == 1, "a request to wait")

        r = s.post("/v1/completions", {"model": model_id, "prompt": "Hello", "max_tokens": 2})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"

        f.close()
        sock.close()  # the long stream goes away; the waiting request runs
        waiter.join(timeout=300)
        assert waiting_result["r"].status_code == 200
        m = s.metrics()
        assert m['swiftlet_errors_total{status="429",code="rate_limit_exceeded"}'] == 1
    finally:
        assert s.stop() == 0


def test_graceful_shutdown_finishes_request_in_flight(model_id):
    s = Server()
    try:
        sock, f = open_stream(s, {"model": model_id, "messages": [{"role": "user", "content": "Count to ten."}],
                                  "max_tokens": 300, "ignore_eos": True, "temperature": 0, "stream": True})
        read_sse_data(f, 2)
        s.proc.send_signal(signal.SIGTERM)  # while the stream is running
        rest = f.read().decode()  # the server closes the connection once the response is complete
        assert "data: [DONE]" in rest
        assert '"finish_reason":"length"' in rest  # ran to max_tokens after the signal
        sock.close()
    finally:
        assert s.stop() == 0
    assert any("stopped" in line for line in s.lines)


def test_health_ready_and_metrics_need_no_key(server, client, model_id):
    assert requests.get(server.url + "/health").json() == {"status": "ok"}
    ready = requests.get(server.url + "/ready").json()
    assert ready == {"status": "ready", "model": model_id}
    client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                   temperature=0)
    r = requests.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ["swiftlet_http_requests_total{", "swiftlet_prompt_tokens_total", "swiftlet_generated_tokens_total",
                 "swiftlet_time_to_first_token_seconds_bucket{", "swiftlet_time_per_output_token_seconds_bucket{",
                 "swiftlet_queue_waiting_sequences", "swiftlet_running_sequences",
                 'swiftlet_sequences_total{finish_reason="length"}']:
        assert name in text, name
    m = server.metrics()
    assert m['swiftlet_http_requests_total{endpoint="/v1/chat/completions",status="200"}'] >= 1
    assert m["swiftlet_prompt_tokens_total"] > 0
    assert m["swiftlet_time_to_first_token_seconds_count"] >= 1
