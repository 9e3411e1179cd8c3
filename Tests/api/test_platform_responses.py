"""The Responses API through the gateway: stored responses live in the platform's database, scoped to the key
that made them (another key gets 404), `previous_response_id` conversations (also across replicas and gateway
restarts), streams relayed and billed from their typed events, function tools continued with their outputs."""

import json

import openai
import pytest

from platform_support import MODEL_SOURCE, WorkerProcess, running_gateway, wait_for
from test_responses import TOOLS

CONFIG = f"""
gateway:
  cluster_token: responses-cluster-token
  response_retention: 7d
clusters: [{{name: local}}]
deployments:
  - name: chat
    model: {json.dumps(MODEL_SOURCE)}
    placement: [local]
    price: {{input_per_million: 0.5, output_per_million: 1.5}}
"""



@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_gateway(str(tmp_path_factory.mktemp("responses")), CONFIG, token="responses-cluster-token") as g:
        workers = []
        try:
            workers.append(WorkerProcess(g, "chat", "local", "responses-1"))
            g.admin = g.create_key("admin", admin=True)["secret"]
            g.alice = g.create_key("alice")
            g.bob = g.create_key("bob")
            wait_for(lambda: any(r["state"] == "ready" for r in g.replicas("chat", g.admin)), 120, "a ready replica")
            g.workers = workers
            yield g
        finally:
            for w in workers:
                w.terminate(timeout=20)


def client(gateway, key):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key["secret"], max_retries=0, timeout=300)


def rows(gateway, request_id):
    return [r for r in gateway.ledger() if r["request_id"] == request_id]


def test_stored_per_key_and_continued(gateway):
    alice, bob = client(gateway, gateway.alice), client(gateway, gateway.bob)
    first = alice.responses.with_raw_response.create(model="chat", input="Name three fruits.", max_output_tokens=32,
                                                     temperature=0)
    billed = rows(gateway, first.headers["x-request-id"])
    first = first.parse()
    assert first.status == "completed" and first.store is True and first.output_text.strip()
    # Billed from the Responses API's usage (input and output tokens).
    assert len(billed) == 1 and billed[0]["key_id"] == gateway.alice["id"]
    assert (billed[0]["prompt_tokens"], billed[0]["completion_tokens"]) == (first.usage.input_tokens, first.usage.output_tokens)

    got = alice.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text and got.usage.output_tokens == first.usage.output_tokens
    # Another key sees nothing: not the object, not the conversation, and it cannot delete it.
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="chat", input="More?", previous_response_id=first.id, max_output_tokens=4)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(first.id)

    second = alice.responses.create(model="chat", input="And three vegetables?", previous_response_id=first.id,
                                    max_output_tokens=32, temperature=0)
    alone = alice.responses.create(model="chat", input="And three vegetables?", max_output_tokens=32, temperature=0,
                                   store=False)
    assert second.previous_response_id == first.id and second.store is True
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    # The continued turn reached the replica that has the conversation's blocks cached.
    assert second.usage.input_tokens_details.cached_tokens > 0
    # A third turn continues the second: the whole conversation, not just the last exchange.
    third = alice.responses.create(model="chat", input="Which of them is red?", previous_response_id=second.id,
                                   max_output_tokens=16, temperature=0)
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens
    # Not stored: not retrievable.
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(alone.id)

    alice.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="chat", input="More?", previous_response_id=first.id, max_output_tokens=4)
    assert alice.responses.retrieve(second.id).id == second.id


def test_streamed_response_is_stored_and_billed(gateway):
    alice = client(gateway, gateway.alice)
    events = []
    with alice.responses.stream(model="chat", input="Say hello.", max_output_tokens=24, temperature=0) as stream:
        for event in stream:
            events.append(event)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed", types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text
    stored = alice.responses.retrieve(final.id)
    assert stored.output_text == deltas and stored.status == "completed"
    billed = [r for r in gateway.ledger() if r["key_id"] == gateway.alice["id"] and r["completion_tokens"] == final.usage.output_tokens
              and r["prompt_tokens"] == final.usage.input_tokens]
    assert billed and billed[-1]["status"] == "completed" and billed[-1]["ttft"] is not None
    # A streamed continuation of the streamed response.
    # Cut by max_output_tokens, it ends with response.incomplete, which is stored as well.
    with alice.responses.stream(model="chat", input="Again, louder.", previous_response_id=final.id,
                                max_output_tokens=4, temperature=0) as stream:
        last = list(stream)[-1]
    assert last.type == "response.incomplete", last
    again = last.response
    assert again.previous_response_id == final.id and again.usage.input_tokens > final.usage.input_tokens
    assert alice.responses.retrieve(again.id).status == "incomplete"


def test_function_call_continued_with_its_output(gateway):
    alice = client(gateway, gateway.alice)
    call = alice.responses.create(model="chat", input="What is the weather in Paris?", tools=TOOLS,
                                  tool_choice="required", max_output_tokens=64, temperature=0)
    calls = [o for o in call.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and "city" in json.loads(calls[0].arguments)
    answer = alice.responses.create(
        model="chat", previous_response_id=call.id, tools=TOOLS, max_output_tokens=24, temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C."}])
    assert answer.status in ("completed", "incomplete") and answer.output[0].type in ("message", "function_call")
    assert answer.usage.input_tokens > call.usage.input_tokens


def test_stored_responses_survive_a_gateway_restart(gateway):
    alice = client(gateway, gateway.alice)
    r = alice.responses.create(model="chat", input="Count to three.", max_output_tokens=12, temperature=0)
    gateway.kill9()
    gateway.start()
    got = alice.responses.retrieve(r.id)
    assert got.output_text == r.output_text
    with pytest.raises(openai.NotFoundError):
        client(gateway, gateway.bob).responses.retrieve(r.id)
    # The worker registers again with the restarted gateway; the conversation goes on.
    wait_for(lambda: any(x["state"] == "ready" for x in gateway.replicas("chat", gateway.admin)), 60,
             "the worker back")
    more = alice.responses.create(model="chat", input="And on to five.", previous_response_id=r.id,
                                  max_output_tokens=8, temperature=0)
    assert more.previous_response_id == r.id


def test_bad_requests(gateway):
    key = gateway.alice["secret"]
    for body, param in [
        ({"model": "chat", "input": "x", "previous_response_id": 7}, "previous_response_id"),
        ({"model": "chat", "input": 7}, "input"),
        ({"model": "chat", "input": "x", "max_output_tokens": -1}, "max_output_tokens"),
    ]:
        r = gateway.post("/v1/responses", body, key)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param, r.text
    r = gateway.post("/v1/responses", {"model": "chat", "input": "x", "previous_response_id": "resp_nope"}, key)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert gateway.get("/v1/responses/resp_nope", key).status_code == 404
    assert gateway.get("/v1/responses/resp_nope").status_code == 401
    assert gateway.post("/v1/responses", {"model": "nope", "input": "x"}, key).status_code == 404


def test_stream_broken_by_a_dead_replica(gateway):
    """Last: it kills the deployment's worker. The client gets the Responses API's error event (no [DONE], no
    response.completed), nothing is stored, and the ledger bills the stream as interrupted."""
    key = gateway.alice["secret"]
    r = gateway.post("/v1/responses", {"model": "chat", "input": "Write a long story about a lighthouse keeper.",
                                       "max_output_tokens": 600, "temperature": 1, "stream": True}, key, stream=True)
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    lines = r.iter_lines()
    response_id = None
    for line in lines:
        event = json.loads(line[6:]) if line.startswith(b"data: ") else {}
        if event.get("type") == "response.created":
            response_id = event["response"]["id"]
        if event.get("type") == "response.output_text.delta":
            break
    worker = next(w for w in gateway.workers if w.replica_id == r.headers["x-swiftlet-replica"])
    worker.kill9()
    rest = [line.decode() for line in lines if line]
    data = [json.loads(l[6:]) for l in rest if l.startswith("data: ")]
    assert "event: error" in rest and data[-1]["error"]["code"] == "replica_failed", rest[-4:]
    assert not any(d.get("type") in ("response.completed", "response.incomplete") for d in data)
    assert "data: [DONE]" not in rest
    billed = rows(gateway, request_id)
    assert len(billed) == 1 and billed[0]["status"] == "interrupted" and billed[0]["completion_tokens"] > 0, billed
    assert response_id and gateway.get(f"/v1/responses/{response_id}", key).status_code == 404
