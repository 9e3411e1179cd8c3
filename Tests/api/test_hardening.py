"""Hostile clients against a real `swiftlet serve`: extreme numbers in every numeric parameter, half-sent
requests, aborted bodies, oversized headers, too many connections. Every one gets a clean answer (or a
closed connection) and the server stays up."""

import json
import socket
import time

import pytest
import requests

from conftest import Server, assert_connection_cap, read_until_closed, trickle_body

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"

# Raw JSON number texts, as a client could send them (Python's json would write big ints exactly too).
EXTREMES = ["9223372036854775807", "-9223372036854775808", "9223372036854775808", "18446744073709551616", "-1", "0",
            "1e308", "-1e308", "4611686018427387904", "0.5"]
# Not numbers at all: JSON has no NaN or Infinity literals; strings are the wrong type.
NOT_NUMBERS = ["NaN", "Infinity", "-Infinity", '"NaN"', '"1e999"']

CHAT_NUMERIC = ["max_tokens", "max_completion_tokens", "n", "top_logprobs", "seed", "temperature", "top_p", "top_k",
                "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "priority"]
COMPLETION_NUMERIC = ["max_tokens", "n", "best_of", "logprobs", "seed", "temperature", "top_p", "top_k", "min_p",
                      "presence_penalty", "frequency_penalty", "repetition_penalty", "priority"]
# Values that fit no numeric parameter: beyond Int64, or beyond any range a parameter allows.
ALWAYS_400 = {"9223372036854775808", "18446744073709551616", "1e308", "-1e308"}
# Values that are legitimately allowed (a 200 is right); every other value gets a 4xx.
INTS = {"9223372036854775807", "-9223372036854775808", "4611686018427387904", "-1", "0"}
ALLOWED = {
    "seed": INTS, "priority": INTS, "top_k": {"9223372036854775807", "4611686018427387904", "0"},
    "temperature": {"0", "0.5"}, "top_p": {"0", "0.5"}, "min_p": {"0", "0.5"},
    "presence_penalty": {"-1", "0", "0.5"}, "frequency_penalty": {"-1", "0", "0.5"}, "repetition_penalty": {"0.5"},
    "top_logprobs": {"0"}, "logprobs": {"0"},
}
# /v1/completions allows max_tokens 0 (the prompt only); chat needs at least one token.
COMPLETION_ALLOWED = {**ALLOWED, "max_tokens": {"0"}}


def post_raw(server, path, text):
    return requests.post(server.url + path, data=text.encode(),
                         headers={**server.headers(), "Content-Type": "application/json"}, timeout=300)


def check(r, what):
    assert r.status_code == 200 or 400 <= r.status_code < 500, (what, r.status_code, r.text)
    if r.status_code != 200:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], (what, r.text)
    return r.status_code


def assert_alive(server):
    assert requests.get(server.url + "/health", timeout=30).status_code == 200


def test_extreme_numbers_in_every_numeric_parameter(server, model_id):
    chat_base = '{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1' % model_id
    completion_base = '{"model": "%s", "prompt": "Hi", "max_tokens": 1' % model_id
    for path, base, params, allowed in ((CHAT, chat_base, CHAT_NUMERIC, ALLOWED),
                                        (COMPLETIONS, completion_base, COMPLETION_NUMERIC, COMPLETION_ALLOWED)):
        for param in params:
            for value in EXTREMES + NOT_NUMBERS:
                body = base.replace(', "max_tokens": 1', "") if param.startswith("max_") else base
                if path == CHAT and param == "top_logprobs":
                    body += ', "logprobs": true'
                status = check(post_raw(server, path, body + ', "%s": %s}' % (param, value)), (path, param, value))
                want_ok = value in allowed.get(param, ())
                assert (status == 200) == want_ok, (path, param, value, status)
                if value in ALWAYS_400 or value in NOT_NUMBERS:
                    assert status == 400, (path, param, value, status)
        # logit_bias: extreme token ids as keys, extreme biases as values.
        for value in EXTREMES + ["-0", "1e400"]:
            check(post_raw(server, path, base + ', "logit_bias": {"%s": 1}}' % value), (path, "logit_bias key", value))
            status = check(post_raw(server, path, base + ', "logit_bias": {"1": %s}}' % value), (path, "logit_bias", value))
            assert status == (200 if value in ("-1", "0", "0.5", "-0") else 400), (path, "logit_bias", value)
        for value in EXTREMES + NOT_NUMBERS:
            status = check(post_raw(server, path, base + ', "stream": true, "stream_options": {"include_usage": %s}}' % value),
                           (path, "stream_options", value))
            assert status == 400, (path, "stream_options", value)
    assert_alive(server)


def test_extreme_numbers_in_console_and_model_routes(server):
    for value in EXTREMES + ["NaN", "-Infinity", "%00", "x" * 2000]:
        for path in ("/v1/console/usage?since=%s&until=%s" % (value, value), "/v1/deployments?limit=%s" % value,
                     "/v1/console/metrics?since=%s" % value, "/v1/console/session?n=%s" % value,
                     "/v1/models/%s" % value, "/metrics?n=%s" % value):
            r = server.get(path)
            assert r.status_code < 500, (path, r.status_code, r.text)
    assert_alive(server)


def test_max_tokens_zero_with_echo_returns_the_prompt_logprobs(client, model_id):
    """Evaluation harnesses score a text this way: the echoed prompt with its token logprobs, nothing generated."""
    r = client.completions.create(model=model_id, prompt="The capital of France is Paris.", max_tokens=0, echo=True,
                                  logprobs=1)
    choice = r.choices[0]
    assert choice.text == "The capital of France is Paris." and choice.finish_reason == "length"
    lp = choice.logprobs
    assert len(lp.tokens) == r.usage.prompt_tokens and lp.token_logprobs[0] is None
    assert all(isinstance(x, float) and x <= 0 for x in lp.token_logprobs[1:])
    assert r.usage.completion_tokens == 0
    plain = client.completions.create(model=model_id, prompt="Hi", max_tokens=0)
    assert plain.choices[0].text == "" and plain.usage.completion_tokens == 0


def raw_connection(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    return s


def test_a_body_cut_short_counts_as_a_client_disconnect(server, model_id):
    key_499 = 'swiftlet_errors_total{status="499",code="client_disconnected"}'
    before = server.metrics()
    errors_500 = sum(v for k, v in before.items() if k.startswith("swiftlet_errors_total") and 'status="500"' in k)
    body = json.dumps({"model": model_id, "messages": [{"role": "user", "content": "Hi"}]}).encode()
    for _ in range(3):
        s = raw_connection(server)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (server.api_key.encode(), len(body) + 100)
                  + body[:20])
        s.close()
    deadline = time.monotonic() + 60
    while server.metrics().get(key_499, 0) < before.get(key_499, 0) + 3:
        assert time.monotonic() < deadline, "the aborted bodies were never counted"
        time.sleep(0.1)
    after = server.metrics()
    assert sum(v for k, v in after.items() if k.startswith("swiftlet_errors_total") and 'status="500"' in k) == errors_500
    assert not any("request failed" in line for line in server.lines)
    assert_alive(server)


def test_oversized_headers_get_431_in_openai_shape(server):
    s = raw_connection(server)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 << 10) + b"\r\n\r\n")
    reply = read_until_closed(s)
    s.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), reply[:200]
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == "headers_too_large"
    assert_alive(server)


@pytest.fixture(scope="module")
def strict_server():
    """A server that closes silent connections after 5 s and holds at most 3 at once."""
    s = Server("--idle-timeout", "5", "--max-connections", "3")
    try:
        yield s
    finally:
        s.stop()


def test_half_sent_and_silent_connections_are_closed(strict_server):
    half = raw_connection(strict_server)
    half.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    silent = raw_connection(strict_server)
    body = raw_connection(strict_server)
    body.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"model\"")
    for s in (half, silent, body):
        s.settimeout(60)  # hang guard: the server must close them long before
        reply = read_until_closed(s)  # ends when the server closes the connection
        assert b" 500 " not in reply[:20]
        s.close()
    assert_alive(strict_server)


def test_connections_over_the_cap_wait_until_one_closes(strict_server):
    assert_connection_cap(strict_server.port, strict_server.url, 3)
    assert_alive(strict_server)


def test_a_trickled_body_gets_408_after_the_body_timeout():
    s = Server("--body-timeout", "2", "--idle-timeout", "60")
    try:
        reply = trickle_body(s.port, "/v1/completions")
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"request_timeout" in reply
        assert_alive(s)
    finally:
        s.stop()
