"""Extreme numbers into every numeric field the gateway itself reads: replica bounds (PATCH /v1/deployments),
usage periods (/v1/usage, /v1/console/usage, `swiftlet usage`), key limits (`swiftlet keys create`), the
replicas' registration and heartbeat (pid, load). Each gets a 4xx or a legitimate 200, and the gateway is alive
and answering afterwards. (The generation fields a gateway forwards are checked by serve, which decides them.)"""

import json
import subprocess

import pytest
import requests

from platform_support import BIN, running_gateway

CONFIG = """
gateway:
  require_api_key: true
  cluster_token: test-cluster-token
clusters:
  - {name: remote}
deployments:
  - name: chat
    model: smollm2
    replicas: {min: 0, max: 2}
    placement: [remote]
"""

# JSON number literals, as sent.
NUMBERS = ["9223372036854775807", "-9223372036854775808", "9223372036854775808", "18446744073709551616", "-1", "0",
           "1e308", "-1e308", "1e400", "0.5", "-0.0", "2147483648"]
# The same as query strings, and what a date parser might make of them.
QUERY_VALUES = NUMBERS + ["nan", "inf", "-inf", "1e-400", "99999999999999999999", "253402300800", "-62135596800",
                          "0x7fffffffffffffff", "9999-12-31", "10000-01-01", "0000-01-01"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_gateway(str(tmp_path_factory.mktemp("numbers")), CONFIG) as g:
        g.admin = g.create_key("admin", admin=True)["secret"]
        g.user = g.create_key("user")["secret"]
        yield g


def send(gateway, method, path, body=None, key=None, token=False):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if token:
        headers["Authorization"] = f"Bearer {gateway.token}"
    return requests.request(method, gateway.url + path, data=body, headers=headers, timeout=30)


def clean(r, allowed=(200,)):
    """A legitimate answer, or a 4xx in the OpenAI error shape."""
    if r.status_code in allowed:
        return True
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert set(r.json()["error"]) >= {"message", "type", "code"}, r.text
    return False


def alive(gateway):
    assert gateway.process.alive(), gateway.process.log()
    assert requests.get(gateway.url + "/health", timeout=10).status_code == 200
    assert gateway.get("/metrics").status_code == 200
    assert gateway.get("/v1/deployments", gateway.admin).status_code == 200
    assert gateway.get("/v1/console/usage", gateway.admin).status_code == 200


def test_replica_bounds(gateway):
    for field in ("min", "max"):
        for n in NUMBERS:
            r = send(gateway, "PATCH", "/v1/deployments/chat", f'{{"replicas": {{"{field}": {n}}}}}', gateway.admin)
            if clean(r):
                bounds = r.json()["replicas"]
                assert 0 <= bounds["min"] <= bounds["max"] <= 64, (field, n, bounds)
    r = send(gateway, "PATCH", "/v1/deployments/chat", '{"replicas": {"min": 0, "max": 2}}', gateway.admin)
    assert r.status_code == 200
    alive(gateway)


def test_usage_periods(gateway):
    for v in QUERY_VALUES:
        for key in (gateway.admin, gateway.user):
            clean(gateway.get("/v1/usage", key, params={"since": v}))
            clean(gateway.get("/v1/console/usage", key, params={"since": v}))
            clean(gateway.get("/v1/console/usage", key, params={"since": "0", "until": v}))
            clean(gateway.get("/v1/console/usage", key, params={"since": v, "until": v}))
        cli = subprocess.run([BIN, "usage", "--db", gateway.db, "--since", v, "--json"], capture_output=True, text=True,
                             timeout=60)
        assert cli.returncode in (0, 1, 64), (v, cli.returncode, cli.stderr)
        if cli.returncode == 0:
            assert isinstance(json.loads(cli.stdout), list)
        else:
            assert "--since" in cli.stderr or "error" in cli.stderr.lower(), cli.stderr
    alive(gateway)


def test_key_limits(gateway):
    for flag in ("--rpm", "--tpm", "--monthly-tokens"):
        for n in NUMBERS:
            r = subprocess.run([BIN, "keys", "create", "--db", gateway.db, "--name", "limits", flag, n, "--json"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode in (0, 1, 64), (flag, n, r.returncode, r.stderr)
            if r.returncode != 0:
                assert r.stderr.strip(), (flag, n)
                continue
            assert n.lstrip("-").isdigit() and int(n) >= 1, f"{flag} {n} was accepted"
            secret = json.loads(r.stdout)["secret"]
            # The limiter does arithmetic with the limit on every request.
            for _ in range(2):
                reply = gateway.post("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "Hi"}],
                                                              "max_tokens": 1}, secret, timeout=60)
                assert reply.status_code in (429, 503), reply.text  # no replica of chat runs here
            assert gateway.get("/v1/usage", secret).status_code == 200
    alive(gateway)


def test_generation_fields_the_gateway_reads(gateway):
    """`model` and `stream` and `stream_options` are the gateway's own reading of a generation request."""
    for path in ("/v1/chat/completions", "/v1/completions"):
        for n in NUMBERS:
            for body in (f'{{"model": {n}, "prompt": "a", "messages": []}}',
                         f'{{"model": "chat", "prompt": "a", "messages": [], "stream": {n}}}',
                         f'{{"model": "chat", "prompt": "a", "messages": [], "stream": true, "stream_options": {n}}}',
                         f'{{"model": "chat", "prompt": "a", "messages": [], "stream": true, '
                         f'"stream_options": {{"include_usage": {n}}}}}'):
                r = send(gateway, "POST", path, body, gateway.admin)
                # No replica of chat runs here: past the gateway's own checks it is 503 no_replica.
                if r.status_code != 503:
                    clean(r, allowed=())
                else:
                    assert r.json()["error"]["code"] == "no_replica", r.text
    alive(gateway)


def test_replica_registration_and_heartbeats(gateway):
    base = {"id": "r-numbers", "deployment": "chat", "cluster": "remote", "url": "http://127.0.0.1:9"}
    fields = ["running", "waiting", "kv_blocks_total", "kv_blocks_used", "kv_blocks_cached", "prefix_lookups",
              "prefix_hits"]
    registered = False
    for n in NUMBERS:
        body = json.dumps(base)[:-1] + f', "pid": {n}}}'
        registered |= clean(send(gateway, "POST", "/internal/replicas", body, token=True))
        for field in fields:
            body = json.dumps(base)[:-1] + f', "load": {{"{field}": {n}}}}}'
            registered |= clean(send(gateway, "POST", "/internal/replicas", body, token=True))
    # The model's facts, each number extreme in turn: a 4xx, or 200 with the facts the deployment then shows.
    facts = {"architecture": "qwen2moe", "parameters": 1000, "active_parameters": 400, "experts": 8,
             "experts_used": 2, "file_bytes": 600, "weight_type": "Q4_K"}
    for n in NUMBERS:
        for field in ("parameters", "active_parameters", "experts", "experts_used", "file_bytes"):
            text = json.dumps(base | {"id": "r-facts", "model_facts": facts | {field: "N"}}).replace('"N"', n)
            if clean(send(gateway, "POST", "/internal/replicas", text, token=True)):
                shown = gateway.deployment("chat", gateway.admin)["model_facts"]
                assert 0 <= shown["active_parameters"] <= shown["parameters"] and shown["experts_used"] <= shown["experts"]
    r = send(gateway, "POST", "/internal/replicas", json.dumps(base | {"id": "r-facts", "model_facts": facts}), token=True)
    assert r.status_code == 200, r.text
    assert gateway.deployment("chat", gateway.admin)["model_facts"] == facts
    assert send(gateway, "DELETE", "/internal/replicas/r-facts", token=True).status_code == 200
    # Two registered replicas, then heartbeats with every extreme load: their loads are summed and compared.
    for rid in ("r-numbers", "r-numbers-2"):
        r = send(gateway, "POST", "/internal/replicas", json.dumps(base | {"id": rid}), token=True)
        assert r.status_code == 200, r.text
    for n in NUMBERS:
        for field in fields:
            for rid in ("r-numbers", "r-numbers-2"):
                clean(send(gateway, "POST", f"/internal/replicas/{rid}/heartbeat", f'{{"load": {{"{field}": {n}}}}}',
                           token=True))
        alive(gateway)
    for rid in ("r-numbers", "r-numbers-2"):
        assert send(gateway, "DELETE", f"/internal/replicas/{rid}", token=True).status_code == 200
    alive(gateway)
