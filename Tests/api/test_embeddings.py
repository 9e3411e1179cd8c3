"""POST /v1/embeddings with the official openai client against `swiftlet serve` on all-MiniLM-L6-v2 (pulled and
converted from its sentence-transformers package by scripts/test): every input form, both encodings, the
vectors against sentence-transformers' own (the fixture), and every bad request a clear 4xx."""

import base64
import json
import os
import struct
import threading

import numpy as np
import openai
import pytest
import requests

from conftest import API_KEY, ROOT, Server

FIXTURE = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "embeddings-minilm.json")


@pytest.fixture(scope="module")
def minilm():
    s = Server(api_key=API_KEY, model="all-minilm-l6-v2")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(minilm):
    return openai.OpenAI(base_url=minilm.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def fixture():
    with open(FIXTURE) as f:
        return json.load(f)


def vector(b64):
    return np.frombuffer(base64.b64decode(b64), dtype="<f4").astype(np.float64)


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_lists_the_model_and_its_facts(client, minilm):
    assert [m.id for m in client.models.list().data] == ["all-minilm-l6-v2"]
    facts = minilm.get("/v1/deployments").json()["data"][0]["model_facts"]
    assert facts["architecture"] == "bert" and facts["weight_type"] == "F16", facts
    assert 22_000_000 < facts["parameters"] < 23_000_000, facts  # all-MiniLM-L6-v2 has 22.7 M


def test_matches_sentence_transformers_through_the_api(client, fixture):
    """The openai client's default (base64) and floats agree, and both are sentence-transformers' vectors."""
    sentences = [s for s in fixture["sentences"] if s["text"].strip()][:96]
    texts = [s["text"] for s in sentences]
    default = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    floats = client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    assert [d.index for d in default.data] == list(range(len(texts)))
    assert default.usage.prompt_tokens == sum(len(s["tokens"]) for s in sentences) == default.usage.total_tokens
    for s, a, b in zip(sentences, default.data, floats.data):
        assert len(a.embedding) == 384
        assert np.array_equal(np.asarray(a.embedding, dtype=np.float32), np.asarray(b.embedding, dtype=np.float32))
        assert cosine(a.embedding, vector(s["embedding"])) >= 0.9999, s["text"]
        assert abs(np.linalg.norm(a.embedding) - 1) < 1e-5


def test_every_input_form(client, fixture):
    s = fixture["sentences"][40]
    one = client.embeddings.create(model="all-minilm-l6-v2", input=s["text"]).data[0].embedding
    tokens = client.embeddings.create(model="all-minilm-l6-v2", input=s["tokens"]).data[0].embedding
    nested = client.embeddings.create(model="all-minilm-l6-v2", input=[s["tokens"], s["tokens"][:5]])
    assert one == tokens == nested.data[0].embedding
    assert len(nested.data) == 2 and nested.usage.prompt_tokens == len(s["tokens"]) + 5
    same = client.embeddings.create(model="all-minilm-l6-v2", input=s["text"], dimensions=384).data[0].embedding
    assert same == one


def test_raw_base64_is_little_endian_float32(minilm, fixture):
    s = fixture["sentences"][60]
    r = minilm.post("/v1/embeddings", {"model": "all-minilm-l6-v2", "input": s["text"], "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(raw) == 384 * 4
    assert cosine(struct.unpack("<384f", raw), vector(s["embedding"])) >= 0.9999


def test_concurrent_requests_get_their_own_vectors(client, fixture):
    """Requests batched together by the server each get exactly what they get alone."""
    sentences = [s for s in fixture["sentences"] if s["text"].strip()][100:116]
    alone = [client.embeddings.create(model="all-minilm-l6-v2", input=s["text"]).data[0].embedding for s in sentences]
    results = [None] * len(sentences)

    def run(i):
        results[i] = client.embeddings.create(model="all-minilm-l6-v2", input=sentences[i]["text"]).data[0].embedding

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sentences))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone


def bad(minilm, body):
    r = minilm.post("/v1/embeddings", body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    error = r.json()["error"]
    assert {"message", "type", "code", "param"} <= set(error), error
    return r.status_code, error


def test_bad_requests_get_clear_4xx(minilm):
    m = "all-minilm-l6-v2"
    assert bad(minilm, {"model": m, "input": []})[1]["param"] == "input"
    assert bad(minilm, {"model": m, "input": ["fine", ""]})[1]["param"] == "input[1]"
    assert bad(minilm, {"model": m, "input": [[]]})[1]["param"] == "input[0]"
    assert bad(minilm, {"model": m, "input": [[101, 30522]]})[1]["param"] == "input[0]"
    assert bad(minilm, {"model": m, "input": [[101, -1]]})[1]["param"] == "input[0]"
    assert bad(minilm, {"model": m, "input": [[101, 2 ** 63]]})[0] == 400
    assert bad(minilm, {"model": m, "input": "x", "encoding_format": "int8"})[1]["param"] == "encoding_format"
    for d in (0, -1, 128, 385, 2 ** 62):
        assert bad(minilm, {"model": m, "input": "x", "dimensions": d})[1]["param"] == "dimensions"
    assert bad(minilm, {"model": m, "input": ["x"] * 2049})[1]["param"] == "input"
    assert bad(minilm, {"model": m, "input": 5})[0] == 400
    assert bad(minilm, {"input": "x"})[1]["param"] == "model"
    assert bad(minilm, {"model": "nope", "input": "x"})[0] == 404
    # Over the 512-token context: named by its index, not truncated.
    status, error = bad(minilm, {"model": m, "input": ["short", "word " * 600]})
    assert error["param"] == "input[1]" and "512" in error["message"], error
    # The completion endpoints refuse an embedding model.
    r = minilm.post("/v1/chat/completions", {"model": m, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_supported", r.text
    r = minilm.post("/v1/completions", {"model": m, "prompt": "hi"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_supported", r.text
    assert requests.get(minilm.url + "/ready", timeout=10).status_code == 200


def test_a_generative_model_refuses_embeddings(server):
    model = server.get("/v1/models").json()["data"][0]["id"]
    r = server.post("/v1/embeddings", {"model": model, "input": "hello"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_supported", r.text
    assert r.json()["error"]["param"] == "model"


# MARK: through swiftlet gateway

GATEWAY_CONFIG = """
gateway:
  cluster_token: embeddings-cluster-token
  health_check_interval: 250ms
clusters:
  - {name: local, supervised: true, hardware_price_per_hour: 0.36}
deployments:
  - name: embed
    model: all-minilm-l6-v2
    engine: {threads: 1}
    replicas: {min: 1, max: 1}
    price: {input_per_million: 0.02, output_per_million: 0}
"""


def test_gateway_serves_and_meters_an_embedding_deployment(tmp_path, fixture):
    from platform_support import running_gateway, wait_for

    with running_gateway(str(tmp_path), GATEWAY_CONFIG, token="embeddings-cluster-token") as g:
        key = g.create_key("rag-app")
        admin = g.create_key("ops", admin=True)
        wait_for(lambda: any(r["state"] == "ready" for r in g.replicas("embed", admin["secret"])), 120, "a ready replica")
        client = openai.OpenAI(base_url=g.url + "/v1", api_key=key["secret"], max_retries=0, timeout=120)
        sentences = [s for s in fixture["sentences"] if s["text"].strip()][10:14]
        r = client.embeddings.create(model="embed", input=[s["text"] for s in sentences])
        for s, d in zip(sentences, r.data):
            assert cosine(d.embedding, vector(s["embedding"])) >= 0.9999
        tokens = sum(len(s["tokens"]) for s in sentences)
        assert r.usage.prompt_tokens == tokens
        rows = [row for row in g.ledger() if row["deployment"] == "embed"]
        assert len(rows) == 1, rows
        assert rows[0]["prompt_tokens"] == tokens and rows[0]["completion_tokens"] == 0
        assert rows[0]["cost"] == pytest.approx(tokens * 0.02 / 1e6)
        facts = g.deployment("embed", admin["secret"])["model_facts"]
        assert facts["architecture"] == "bert" and facts["experts"] == 0, facts
        # Chat to an embedding deployment: the replica's 400 comes back as it is.
        bad = requests.post(g.url + "/v1/chat/completions", json={"model": "embed", "messages": [{"role": "user", "content": "hi"}]},
                            headers={"Authorization": f"Bearer {key['secret']}"}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "model_not_supported", bad.text


TINY_NOMIC = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "tiny", "tiny-nomic-bert.gguf")


def test_matryoshka_dimensions_on_a_nomic_bert():
    """A Nomic BERT served as a Matryoshka model (truncation allowed down to 32 of its 128 dimensions): `dimensions`
    gives the leading dimensions of the full vector, of unit length again, in both encodings; fewer than allowed
    or more than it has get 400. The vectors are the exact pass's (the tiny model's fixture)."""
    with open(os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "tiny", "tiny-nomic-bert.json")) as f:
        expected = json.load(f)["sentences"]
    s = Server("--matryoshka-dimensions", "32", api_key=API_KEY, model=TINY_NOMIC)
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        texts = [e["text"] for e in expected]
        full = client.embeddings.create(model="tiny-nomic-bert", input=texts, encoding_format="float")
        for e, d in zip(expected, full.data):
            assert len(d.embedding) == 128 and cosine(d.embedding, e["embedding"]) >= 0.99999
        for dims in (32, 100, 128):
            for fmt in ("float", "base64"):
                r = requests.post(s.url + "/v1/embeddings", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                                  json={"model": "tiny-nomic-bert", "input": texts, "dimensions": dims, "encoding_format": fmt})
                assert r.status_code == 200, r.text
                for whole, d in zip(full.data, r.json()["data"]):
                    v = vector(d["embedding"]) if fmt == "base64" else np.array(d["embedding"], dtype=np.float64)
                    head = np.array(whole.embedding[:dims], dtype=np.float64)
                    assert len(v) == dims and abs(np.linalg.norm(v) - 1) < 1e-5
                    assert np.abs(v - head / np.linalg.norm(head)).max() < 1e-6
        for dims in (0, 31, 129, 2**40):
            r = requests.post(s.url + "/v1/embeddings", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                              json={"model": "tiny-nomic-bert", "input": "x", "dimensions": dims})
            assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions", r.text
    finally:
        s.stop()


def test_decoder_embedding_model_beside_generation():
    """A decoder embedding model (Qwen3-Embedding's kind, tiny): /v1/embeddings runs its inputs through the batch
    engine's scheduler while a chat streams on the same server; the vectors are the exact pass's (the fixture).
    A plain language model refuses /v1/embeddings with 400."""
    tiny = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "tiny")
    with open(os.path.join(tiny, "tiny-qwen3-embedding.json")) as f:
        expected = json.load(f)["sentences"]
    s = Server(api_key=API_KEY, model=os.path.join(tiny, "tiny-qwen3-embedding.gguf"))
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        stream = client.completions.create(model="tiny-qwen3-embedding", prompt="Once upon a time", max_tokens=64,
                                           stream=True, extra_body={"ignore_eos": True})
        first = next(iter(stream))
        r = client.embeddings.create(model="tiny-qwen3-embedding", input=[e["text"] for e in expected])
        assert [d.index for d in r.data] == list(range(len(expected)))
        for e, d in zip(expected, r.data):
            assert cosine(d.embedding, e["embedding"]) >= 0.9999
        assert r.usage.prompt_tokens == sum(len(e["tokens"]) for e in expected)
        assert first.choices and sum(1 for _ in stream) > 0
        tokens = client.embeddings.create(model="tiny-qwen3-embedding", input=[expected[0]["tokens"]])
        assert tokens.data[0].embedding == r.data[0].embedding
        r = requests.post(s.url + "/v1/embeddings", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                          json={"model": "tiny-qwen3-embedding", "input": "x", "dimensions": 8})
        assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions", r.text
    finally:
        s.stop()
    plain = Server(api_key=API_KEY, model=os.path.join(tiny, "tiny-qwen3.gguf"))
    try:
        r = requests.post(plain.url + "/v1/embeddings", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                          json={"model": "tiny-qwen3", "input": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_supported", r.text
    finally:
        plain.stop()
