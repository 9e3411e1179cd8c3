"""A platform of two clusters x two workers, all real processes on 127.0.0.1: routing by cluster preference,
a worker killed under load (pre-first-token failures retried, broken streams end with an error event), a whole
cluster stopped and restarted, the gateway killed with -9 and restarted with its ledger intact, usage, costs."""

import concurrent.futures
import json
import os
import signal
import time

import openai
import pytest

from platform_support import (Gateway, MODEL_SOURCE, WorkerProcess, kill_all_workers, stop_everything, stream_outcome,
                              wait_for)

CONFIG = f"""
gateway:
  require_api_key: true
  cluster_token: test-cluster-token
  retries: 2
  cold_start_timeout: 20s
  health_check_interval: 250ms
  unhealthy_after: 2
  heartbeat_timeout: 3s
clusters:
  - {{name: east, hardware_price_per_hour: 0.36}}
  - {{name: west, hardware_price_per_hour: 0.18}}
deployments:
  - name: chat
    model: {json.dumps(MODEL_SOURCE)}
    replicas: {{min: 0, max: 4}}
    target_concurrency: 4
    placement: [east, west]
    price: {{input_per_million: 1.0, output_per_million: 2.0}}
"""

COMPLETED = []  # request ids the clients saw complete


class Platform:
    def __init__(self, tmp_path):
        self.gateway = Gateway(tmp_path, CONFIG)
        self.key = self.gateway.create_key("load", admin=True)["secret"]
        self.workers = {}
        for cluster in ("east", "west"):
            for i in (1, 2):
                self.start_worker(f"{cluster}-{i}", cluster)
        self.wait_ready(4)

    def start_worker(self, replica_id, cluster):
        self.workers[replica_id] = WorkerProcess(self.gateway, "chat", cluster, replica_id)

    def wait_ready(self, n, timeout=120):
        def ready():
            try:
                return len([r for r in self.gateway.replicas("chat", self.key)
                            if r["state"] == "ready" and not r["ejected"]]) >= n
            except Exception:
                return False
        wait_for(ready, timeout, f"{n} ready replicas\n" + self.gateway.process.log())

    def restart_dead_workers(self):
        for rid, w in list(self.workers.items()):
            if not w.alive():
                self.start_worker(rid, rid.split("-")[0])
        self.wait_ready(4)

    def chat(self, stream=False, max_tokens=8, content="Say something short.", **extra):
        body = {"model": "chat", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                "temperature": 0, "stream": stream, **extra}
        return self.gateway.post("/v1/chat/completions", body, self.key, stream=stream)

    def client(self):
        return openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=self.key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = None
    try:
        p = Platform(str(tmp_path_factory.mktemp("failover")))
        yield p
    finally:
        if p is not None:
            for w in p.workers.values():
                w.terminate(timeout=20)
            p.gateway.stop()
            kill_all_workers(p.gateway.url)
        stop_everything()


def one_request(platform, i):
    """A request through the gateway: ('completed', request id, cluster) or ('error', ...) or ('broken', ...)."""
    stream = i % 2 == 1
    r = platform.chat(stream=stream, max_tokens=12, content=f"Count to {i % 5 + 3}.")
    rid, cluster = r.headers.get("x-request-id"), r.headers.get("x-swiftlet-cluster")
    if not stream:
        if r.status_code == 200:
            assert r.json()["choices"][0]["message"]["content"] is not None
            return "completed", rid, cluster, False
        body = r.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        return "error", rid, body["error"], False
    assert r.status_code == 200, r.text
    outcome, detail = stream_outcome(r)
    return outcome, rid, detail if outcome != "completed" else cluster, True


def test_openai_client_through_the_gateway(platform):
    client = platform.client()
    assert [m.id for m in client.models.list().data] == ["chat"]
    reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                           temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens >= 1
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0)
    COMPLETED.append(raw.headers["x-request-id"])
    chunks = list(client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=6, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.usage is None for c in chunks), "usage only when the client asked for it"
    with_usage = list(client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}))
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens >= 1


def test_preferred_cluster_takes_the_traffic(platform):
    for i in range(6):
        r = platform.chat(max_tokens=4, content=f"Hello {i}")
        assert r.status_code == 200, r.text
        assert r.headers["x-swiftlet-cluster"] == "east"
        COMPLETED.append(r.headers["x-request-id"])


def test_a_conversation_stays_where_its_kv_is_cached(platform):
    system = "You are a terse assistant for a shipping company. " * 6
    key = platform.key
    history = [{"role": "system", "content": system}, {"role": "user", "content": "Where is my parcel?"}]
    replicas = []
    for turn in range(3):
        r = platform.gateway.post("/v1/chat/completions", {"model": "chat", "messages": history, "max_tokens": 6,
                                                           "temperature": 0}, key)
        assert r.status_code == 200, r.text
        replicas.append(r.headers["x-swiftlet-replica"])
        COMPLETED.append(r.headers["x-request-id"])
        cached = r.json()["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
        if turn > 0:
            assert cached >= 16, "the later turns reuse the cached blocks of the earlier ones"
        history += [{"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]},
                    {"role": "user", "content": f"And then {turn}?"}]
    assert len(set(replicas)) == 1, replicas
    home = replicas[0]
    wait_for(lambda: next(r for r in platform.gateway.replicas("chat", key) if r["id"] == home)["load"]["prefix_hits"] > 0,
             5, "the replica's heartbeat to report its prefix cache hits")


def test_worker_killed_under_load(platform):
    victim = platform.workers["east-1"]
    retries_before = platform.gateway.metrics().get('swiftlet_gateway_retries_total{deployment="chat"}', 0)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one_request, platform, i) for i in range(40)]
        wait_for(lambda: any(r["id"] == "east-1" and r["outstanding"] > 0
                             for r in platform.gateway.replicas("chat", platform.key)), 60,
                 "requests in flight on east-1", interval=0.02)
        victim.kill9()
        results = [f.result(timeout=300) for f in futures]
    outcomes = [r[0] for r in results]
    assert "broken" not in outcomes, [r for r in results if r[0] == "broken"]
    non_stream = [r for r in results if not r[3]]
    assert all(r[0] == "completed" for r in non_stream), [r for r in non_stream if r[0] != "completed"]
    for r in results:
        if r[0] == "error":
            assert r[2]["code"] == "replica_failed", r
    assert outcomes.count("completed") >= 36, results
    COMPLETED.extend(r[1] for r in results if r[0] == "completed")
    retries = platform.gateway.metrics().get('swiftlet_gateway_retries_total{deployment="chat"}', 0)
    print(f"\nkill -9 under load: {outcomes.count('completed')} completed, {outcomes.count('error')} clean errors, "
          f"{int(retries - retries_before)} retries")
    assert retries > retries_before, "requests that failed before their first token were retried"
    rows = {row["request_id"]: row for row in platform.gateway.ledger()}
    for r in results:
        if r[0] == "completed":
            assert rows[r[1]]["replica"] != "east-1" or rows[r[1]]["status"] == "completed"
    wait_for(lambda: any(r["id"] == "east-1" and (r["ejected"] or r["state"] == "failed")
                         for r in platform.gateway.replicas("chat", platform.key))
             or not any(r["id"] == "east-1" for r in platform.gateway.replicas("chat", platform.key)), 10,
             "east-1 out of rotation")
    for i in range(4):
        r = platform.chat(max_tokens=4, content=f"After {i}")
        assert r.status_code == 200 and r.headers["x-swiftlet-replica"] != "east-1"
        COMPLETED.append(r.headers["x-request-id"])


def test_stream_broken_midway_ends_with_an_error_event(platform):
    platform.restart_dead_workers()
    story = "Write a long story about the sea."
    prompt_tokens = platform.chat(max_tokens=1, content=story).json()["usage"]["prompt_tokens"]
    r = platform.chat(stream=True, max_tokens=400, content=story, ignore_eos=True)
    assert r.status_code == 200
    replica = r.headers["x-swiftlet-replica"]
    lines = r.iter_lines()
    first = next(l for l in lines if l and b'"content":"' in l and b'"content":""' not in l)
    assert first.startswith(b"data: ")
    platform.workers[replica].kill9()
    rest = [l.decode() for l in lines if l]
    assert rest[-1] == "data: [DONE]", rest[-3:]
    error = json.loads(rest[-2][6:])["error"]
    assert error["code"] == "replica_failed" and replica in error["message"], rest[-2]
    row = next(row for row in platform.gateway.ledger() if row["request_id"] == r.headers["x-request-id"])
    assert row["status"] == "interrupted" and row["completion_tokens"] >= 1
    # The replica took the whole prompt before it broke: billed, although its usage chunk never came.
    assert row["prompt_tokens"] == prompt_tokens > 0, row
    platform.restart_dead_workers()


def test_whole_cluster_down_then_back(platform):
    for rid in ("east-1", "east-2"):
        platform.workers[rid].kill9()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: one_request(platform, i), range(12)))
    assert [r for r in results if r[0] == "broken"] == []
    completed = [r for r in results if r[0] == "completed"]
    assert len(completed) >= 10, results
    COMPLETED.extend(r[1] for r in completed)
    for i in range(4):
        r = platform.chat(max_tokens=4, content=f"West {i}")
        assert r.status_code == 200, r.text
        assert r.headers["x-swiftlet-cluster"] == "west"
        COMPLETED.append(r.headers["x-request-id"])
    # The cluster comes back: it registers again and gets the traffic again.
    platform.start_worker("east-1", "east")
    platform.start_worker("east-2", "east")
    platform.wait_ready(4)
    clusters = []
    for i in range(4):
        r = platform.chat(max_tokens=4, content=f"East again {i}")
        assert r.status_code == 200
        clusters.append(r.headers["x-swiftlet-cluster"])
        COMPLETED.append(r.headers["x-request-id"])
    assert clusters == ["east"] * 4


def test_gateway_kill9_keeps_every_completed_request_in_the_ledger(platform):
    gateway = platform.gateway
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        def attempt(i):
            try:
                return one_request(platform, i)
            except Exception as e:  # the gateway dies under some of them
                return "failed", None, repr(e), None
        futures = [pool.submit(attempt, i) for i in range(24)]
        time.sleep(1.5)
        gateway.kill9()
        results = [f.result(timeout=300) for f in futures]
    COMPLETED.extend(r[1] for r in results if r[0] == "completed")
    gateway.start()
    rows = gateway.ledger()
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids)), "one row per request"
    missing = [rid for rid in COMPLETED if rid not in set(ids)]
    assert missing == [], f"completed requests without a ledger row: {missing}"
    assert all(row["status"] == "completed" for row in rows if row["request_id"] in set(COMPLETED))
    # The workers find the new gateway and register again.
    platform.wait_ready(4, timeout=60)
    r = platform.chat(max_tokens=4)
    assert r.status_code == 200, r.text


def test_usage_costs_and_deployments(platform):
    gateway = platform.gateway
    r = gateway.get("/v1/usage", platform.key)
    assert r.status_code == 200, r.text
    usage = r.json()
    rows = [row for row in gateway.ledger() if row["request_id"] in set(COMPLETED)]
    chat = next(d for d in usage["data"] if d["deployment"] == "chat")
    rows_all = [row for row in gateway.ledger() if row["key_id"] == usage["key_id"] and row["deployment"] == "chat"]
    # `requests` is every row; how they ended is told apart (the interrupted stream above, failures).
    for status in ("completed", "interrupted", "failed"):
        assert chat[status] == sum(1 for row in rows_all if row["status"] == status), (status, chat)
    assert chat["requests"] == len(rows_all) == chat["completed"] + chat["interrupted"] + chat["failed"]
    assert chat["interrupted"] >= 1
    prompt = sum(row["prompt_tokens"] for row in gateway.ledger())
    completion = sum(row["completion_tokens"] for row in gateway.ledger())
    assert chat["prompt_tokens"] == prompt and chat["completion_tokens"] == completion
    assert chat["cost"] == pytest.approx(prompt * 1.0 / 1e6 + completion * 2.0 / 1e6, rel=1e-9)
    assert usage["total_tokens"] == prompt + completion and rows
    cli = json.loads(gateway.cli("usage", "--since", "2000-01-01", "--json").stdout)
    mine = next(x for x in cli if x["deployment"] == "chat" and x["key_id"] == usage["key_id"])
    assert mine["prompt_tokens"] == prompt and mine["cost"] == pytest.approx(chat["cost"], rel=1e-9)
    table = gateway.cli("usage", "--since", "2000-01-01").stdout
    assert usage["key_id"] in table and "chat" in table
    assert gateway.get("/v1/usage?since=yesterday-ish", platform.key).status_code == 400

    # Configured prices beside the measured cost of the hardware per million tokens.
    for _ in range(3):
        assert platform.chat(max_tokens=8).status_code == 200
    d = wait_for(lambda: (lambda d: d if d["cost"]["measured_cost_per_million_tokens"] else None)(
        gateway.deployment("chat", platform.key)), 10, "a measured cost")
    assert d["price"] == {"input_per_million": 1.0, "output_per_million": 2.0}
    assert d["cost"]["tokens"] > 0 and d["cost"]["hardware_dollars"] > 0
    assert {c["name"] for c in d["clusters"]} == {"east", "west"}
    replica = d["clusters"][0]["replicas"][0]
    assert {"id", "state", "url", "outstanding", "load", "kv_usage", "ejected"} <= set(replica)
    assert replica["load"]["kv_blocks_total"] > 0
    metrics = gateway.metrics()
    assert metrics['swiftlet_gateway_measured_cost_per_million_tokens{deployment="chat"}'] > 0
    assert metrics['swiftlet_gateway_configured_price_per_million_tokens{deployment="chat",kind="output"}'] == 2.0
    assert metrics['swiftlet_gateway_replicas{deployment="chat",cluster="east",state="ready"}'] == 2


def test_sigterm_drains_the_gateway(platform):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(platform.chat, True, 48) for _ in range(2)]
        time.sleep(0.5)
        platform.gateway.process.proc.send_signal(signal.SIGTERM)
        outcomes = [stream_outcome(f.result(timeout=120))[0] for f in futures]
    assert outcomes == ["completed", "completed"]
    assert platform.gateway.process.proc.wait(timeout=60) == 0
    platform.gateway.start()
    platform.wait_ready(4, timeout=60)
