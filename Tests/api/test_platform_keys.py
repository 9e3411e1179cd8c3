"""API keys at the gateway: unknown and revoked keys get 401, per-key requests and tokens per minute get 429 with
Retry-After, a spent monthly quota gets 429 saying so, and no secret is ever stored in plain text."""

import json
import os

import pytest

from platform_support import MODEL_SOURCE, WorkerProcess, running_gateway, wait_for

CONFIG = f"""
gateway:
  cluster_token: keys-cluster-token
clusters: [{{name: local}}, {{name: far}}]
deployments:
  - name: chat
    model: {json.dumps(MODEL_SOURCE)}
    placement: [local]
    price: {{input_per_million: 0.5, output_per_million: 1.5}}
  - name: ghost
    model: {json.dumps(MODEL_SOURCE)}
    placement: [far]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_gateway(str(tmp_path_factory.mktemp("keys")), CONFIG, token="keys-cluster-token") as g:
        worker = None
        try:
            worker = WorkerProcess(g, "chat", "local", "keys-1")
            admin = g.create_key("admin", admin=True)["secret"]
            wait_for(lambda: any(r["state"] == "ready" for r in g.replicas("chat", admin)), 120, "a ready replica")
            yield g
        finally:
            if worker is not None:
                worker.terminate(timeout=20)


def chat(gateway, key, max_tokens=4, content="Hi"):
    return gateway.post("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": content}],
                                                 "max_tokens": max_tokens, "temperature": 0}, key)


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_missing_and_unknown_keys_get_401(gateway):
    assert error_of(chat(gateway, None), 401)["code"] == "missing_api_key"
    assert error_of(chat(gateway, "sk-swiftlet-" + "0" * 64), 401)["code"] == "invalid_api_key"
    assert error_of(gateway.get("/v1/models", "nope"), 401)["code"] == "invalid_api_key"
    assert gateway.get("/health").status_code == 200 and gateway.get("/metrics").status_code == 200


def test_revoked_key_gets_401(gateway):
    key = gateway.create_key("to-revoke")
    assert chat(gateway, key["secret"]).status_code == 200
    out = gateway.cli("keys", "revoke", key["id"]).stdout
    assert key["id"] in out
    assert error_of(chat(gateway, key["secret"]), 401)["code"] == "invalid_api_key"
    listed = json.loads(gateway.cli("keys", "list", "--json").stdout)
    assert next(k for k in listed if k["id"] == key["id"])["revoked_at"] is not None
    assert gateway.cli("keys", "revoke", "key_missing", check=False).returncode != 0


def test_requests_per_minute(gateway):
    key = gateway.create_key("rpm", rpm=2)["secret"]
    assert chat(gateway, key).status_code == 200
    assert chat(gateway, key).status_code == 200
    r = chat(gateway, key)
    err = error_of(r, 429)
    assert err["type"] == "rate_limit_error" and "2 requests per minute" in err["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 30


def test_tokens_per_minute(gateway):
    key = gateway.create_key("tpm", tpm=20)["secret"]
    first = chat(gateway, key, max_tokens=8, content="Tell me about the weather today in a few words.")
    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] > 20
    r = chat(gateway, key)
    err = error_of(r, 429)
    assert "tokens per minute" in err["message"]
    assert int(r.headers["Retry-After"]) >= 1


def test_monthly_quota_exhaustion(gateway):
    key = gateway.create_key("quota", monthly_tokens=60)["secret"]
    statuses = []
    for _ in range(10):
        r = chat(gateway, key, max_tokens=8)
        statuses.append(r.status_code)
        if r.status_code == 429:
            err = error_of(r, 429)
            assert err["code"] == "insufficient_quota"
            assert "Monthly token quota exhausted" in err["message"] and "60 tokens" in err["message"]
            assert int(r.headers["Retry-After"]) >= 1
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    usage = gateway.get("/v1/usage", key).json()
    assert usage["total_tokens"] >= 60


def test_secrets_are_never_stored_in_plain_text(gateway):
    created = [gateway.create_key(f"secret-{i}") for i in range(3)]
    for k in created:
        assert chat(gateway, k["secret"]).status_code == 200
    blob = b""
    for name in os.listdir(gateway.dir):
        if name.startswith("platform.db"):
            with open(os.path.join(gateway.dir, name), "rb") as f:
                blob += f.read()
    for k in created:
        assert k["secret"].encode() not in blob
        assert k["secret"][16:].encode() not in blob
    listing = gateway.cli("keys", "list").stdout
    assert all(k["secret"] not in listing for k in created)
    assert all(k["id"] in listing for k in created)


def test_deployment_without_replicas_and_nothing_to_start_gets_503(gateway):
    key = gateway.create_key("ghost")["secret"]
    r = gateway.post("/v1/chat/completions", {"model": "ghost", "messages": [{"role": "user", "content": "Hi"}]}, key)
    err = error_of(r, 503)
    assert err["code"] == "no_replica" and "'ghost'" in err["message"]
    assert error_of(gateway.post("/v1/chat/completions", {"model": "nope", "messages": []}, key), 404)["code"] \
        == "model_not_found"
    assert error_of(gateway.post("/v1/chat/completions", {"messages": []}, key), 400)["param"] == "model"
    bad = gateway.post("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "Hi"}],
                                                "temperature": "hot"}, key)
    assert error_of(bad, 400)["param"] == "temperature", "the replica's validation comes through"
    register = gateway.post("/internal/replicas", {"id": "x", "deployment": "chat", "cluster": "local",
                                                   "url": "http://127.0.0.1:9"}, key)
    assert error_of(register, 401)["code"] == "invalid_cluster_token"
