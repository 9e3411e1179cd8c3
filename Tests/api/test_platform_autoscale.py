"""The autoscaler with the gateway's supervisor: from zero, a request cold-starts a worker; load brings the
deployment up to max; idle brings it back to zero (processes gone); the next request cold-starts again. The
cold-start time (arrival to first token) is measured and reported."""

import concurrent.futures
import json
import signal
import threading
import time

import pytest

from platform_support import Gateway, MODEL_SOURCE, kill_all_workers, running_gateway, stream_outcome, wait_for, workers_of

CONFIG = f"""
gateway:
  require_api_key: false
  cold_start_timeout: 10s
  health_check_interval: 250ms
  worker_stop_grace: 5s
clusters:
  - {{name: local, supervised: true, hardware_price_per_hour: 0.10}}
deployments:
  - name: auto
    model: {json.dumps(MODEL_SOURCE)}
    engine: {{threads: 1, kv_cache_memory: 32MB, max_sequences: 8, context_length: 1024}}
    replicas: {{min: 0, max: 2}}
    target_concurrency: 1
    scale_to_zero_after: 3s
    scale_down_delay: 1s
  - name: broken
    model: /nonexistent/model.gguf
    replicas: {{min: 0, max: 1}}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_gateway(str(tmp_path_factory.mktemp("autoscale")), CONFIG) as g:
        yield g


def live(gateway):
    return [r for r in gateway.replicas("auto") if r["state"] in ("starting", "ready")]


def stream(gateway, max_tokens=8, content="Hi", **extra):
    body = {"model": "auto", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, **extra}
    start = time.monotonic()
    r = gateway.post("/v1/chat/completions", body, stream=True)
    assert r.status_code == 200, r.text
    first = None
    lines = []
    for line in r.iter_lines():
        if line and first is None and b'"content":"' in line and b'"content":""' not in line:
            first = time.monotonic() - start
        if line:
            lines.append(line)
    return r, first, lines


def cold_start(gateway, count):
    assert live(gateway) == [] and workers_of(gateway.url) == []
    r, client_ttft, lines = stream(gateway)
    assert lines[-1] == b"data: [DONE]"
    d = gateway.deployment("auto")
    assert d["cold_starts"]["count"] == count
    reported = d["cold_starts"]["last_seconds"]
    print(f"\ncold start #{count}: {reported:.3f} s reported by the gateway (request arrival to first token), "
          f"{client_ttft:.3f} s seen by the client")
    assert 0 < reported < 10
    assert gateway.metrics()['swiftlet_gateway_cold_start_seconds_count{deployment="auto"}'] == count
    row = next(row for row in gateway.ledger() if row["request_id"] == r.headers["x-request-id"])
    assert row["cold_start"] == 1 and row["status"] == "completed"
    return reported


def test_scale_from_zero_to_max_and_back_to_zero(gateway):
    assert gateway.deployment("auto")["replicas"]["ready"] == 0
    cold_start(gateway, 1)

    # Load: four streams at a time against a target of one per replica.
    stop = threading.Event()

    def load():
        while not stop.is_set():
            stream(gateway, max_tokens=48, content="Tell me a story.", ignore_eos=True)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load) for _ in range(4)]
        try:
            wait_for(lambda: gateway.deployment("auto")["replicas"]["ready"] == 2, 90, "two ready replicas")
            peak = gateway.deployment("auto")
            assert peak["replicas"]["desired"] == 2 and len(live(gateway)) == 2, "never above max"
            assert len(workers_of(gateway.url)) == 2
        finally:
            stop.set()
            for f in futures:
                f.result(timeout=120)

    # Idle: back to zero, and the worker processes are gone.
    wait_for(lambda: live(gateway) == [] and gateway.deployment("auto")["replicas"]["ready"] == 0, 60,
             "scale to zero")
    wait_for(lambda: workers_of(gateway.url) == [], 30, "worker processes to exit")

    reported = cold_start(gateway, 2)
    d = gateway.deployment("auto")
    assert d["cost"]["tokens"] > 0 and d["cost"]["measured_cost_per_million_tokens"] > 0
    assert reported == d["cold_starts"]["last_seconds"]


def test_a_cold_start_that_cannot_succeed_ends_in_a_clear_503(gateway):
    start = time.monotonic()
    r = gateway.post("/v1/chat/completions", {"model": "broken", "messages": [{"role": "user", "content": "Hi"}],
                                              "max_tokens": 4})
    waited = time.monotonic() - start
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "cold_start_timeout" and "'broken'" in err["message"]
    assert "exited" in err["message"], err["message"]
    assert 9 < waited < 30
    assert gateway.deployment("auto")["replicas"]["ready"] <= 2
    row = next(row for row in gateway.ledger() if row["deployment"] == "broken")
    assert row["status"] == "failed" and row["http_status"] == 503


def test_sigterm_stops_the_workers_it_started(gateway):
    if not live(gateway):
        stream(gateway)
    pids = workers_of(gateway.url)
    assert pids
    ids = [r["id"] for r in live(gateway)]
    gateway.process.proc.send_signal(signal.SIGTERM)
    assert gateway.process.proc.wait(timeout=60) == 0
    wait_for(lambda: workers_of(gateway.url) == [], 10, "supervised workers to stop with the gateway")
    # The draining gateway still listened when it stopped its workers: each deregistered (the gateway
    # logged it) instead of finding the port closed and retrying.
    gateway.process._reader.join(timeout=10)
    log = gateway.process.lines
    for rid in ids:
        assert any(f"replica {rid} is draining" in line for line in log), "\n".join(log[-40:])
    assert not any("cannot reach the gateway" in line for line in log), "\n".join(log[-40:])


def test_workers_do_not_outlive_a_killed_gateway(gateway):
    gateway.start()
    stream(gateway)
    assert workers_of(gateway.url)
    gateway.kill9()
    wait_for(lambda: workers_of(gateway.url) == [], 15, "orphaned workers to exit")


def test_no_worker_starts_before_the_gateway_listens(tmp_path):
    """A deployment with a minimum: its first worker starts once the gateway listens (it registers at the
    gateway's address), not in an error at every start."""
    g = Gateway(str(tmp_path), CONFIG.replace("replicas: {min: 0, max: 1}", "replicas: {min: 1, max: 1}"))
    try:
        wait_for(lambda: any("started replica broken-" in line for line in g.process.lines), 30,
                 "the minimum's worker to start\n" + g.process.log())
        assert not any("not listening" in line for line in g.process.lines), g.process.log()
    finally:
        g.stop()
        kill_all_workers(g.url)
