"""Soak with faults (not part of the default test run; `scripts/soak-faults`, see RELIABILITY.md).

A gateway on 127.0.0.1 supervising 2 workers; N concurrent clients (default 64) stream chat completions through
it for a bounded time (default 10 minutes), 10% of the requests malformed; every `--kill-every` seconds (default
120) the oldest worker is killed with -9 and the supervisor starts a replacement. At the end it asserts:
- 0 lost requests: each ended completed ([DONE] after a finish reason and usage) or with a clean error (an
  OpenAI-shaped error response, or an error event then [DONE] for a stream that broke after output began);
- the ledger equals what the clients saw: one row per request that reached a replica, none other; completed rows
  carry the usage the client got, interrupted rows the prompt and the tokens the client received, failed rows 0;
- private memory (RssAnon) of every process flat after its warm-up.
"""

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import requests  # noqa: E402

from platform_support import MODEL_SOURCE, Gateway, kill_all_workers, stop_everything, wait_for, workers_of  # noqa: E402

PROMPTS = ["Say hello.", "Count to five.", "Name three colours.", "What is the capital of France?",
           "Write one sentence about the sea.", "List two fruits.", "Give me a short greeting.", "What is 2 + 2?"]


def config(args):
    return f"""
gateway:
  require_api_key: true
  retries: 2
  cold_start_timeout: 120s
  health_check_interval: 250ms
  heartbeat_timeout: 3s
  worker_stop_grace: 5s
  cost_window: 60s
clusters:
  - {{name: local, supervised: true}}
deployments:
  - name: soak
    model: {json.dumps(MODEL_SOURCE)}
    engine: {{threads: 1, kv_cache_memory: 64MB, max_sequences: 32, context_length: 1024}}
    replicas: {{min: 2, max: 2}}
    target_concurrency: {max(1, args.streams // 2)}
    placement: [local]
"""


def bad_request(rng):
    """A malformed request: (body text, whether it reaches a replica, so gets a ledger row)."""
    kind = rng.randrange(6)
    if kind == 0:
        return '{"model": "soak", "messages": [', False
    if kind == 1:
        return json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}), False
    if kind == 2:
        return json.dumps({"messages": [{"role": "user", "content": "Hi"}]}), False
    if kind == 3:
        return json.dumps({"model": "soak", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": -1,
                           "stream": True}), True
    if kind == 4:
        return json.dumps({"model": "soak", "messages": "not a list", "stream": True}), True
    return json.dumps({"model": "soak", "messages": [{"role": "user", "content": "Hi"}], "temperature": 9e99}), True


def read_stream(r):
    """(outcome, details) of a 200 stream: completed, interrupted (error event then [DONE]) or lost."""
    chunks, finished, usage, error, done = 0, False, None, None, False
    try:
        for raw in r.iter_lines():
            if not raw:
                continue
            line = raw.decode()
            if not line.startswith("data: "):
                return "lost", {"line": line}
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            if done:
                return "lost", {"event after [DONE]": data}
            event = json.loads(data)
            if "error" in event:
                error = event["error"]
                continue
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                if choice.get("finish_reason"):
                    finished = True
    except (requests.exceptions.RequestException, ValueError) as e:
        return "lost", {"exception": repr(e), "chunks": chunks}
    if done and error is not None and set(error) >= {"message", "type", "code"}:
        return "interrupted", {"chunks": chunks, "error": error.get("code")}
    if done and finished and usage and error is None:
        return "completed", {"chunks": chunks, "usage": usage}
    return "lost", {"done": done, "finished": finished, "usage": usage, "error": error, "chunks": chunks}


def client(gateway, key, deadline, seed, args, results, lock):
    rng = random.Random(seed)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = gateway.url + "/v1/chat/completions"
    while time.monotonic() < deadline:
        result = {"id": None}
        try:
            if rng.random() < args.bad_fraction:
                body, forwarded = bad_request(rng)
                result |= {"kind": "bad", "forwarded": forwarded}
                r = session.post(url, data=body, headers=headers, timeout=300)
                result["id"] = r.headers.get("x-request-id")
                error = r.json().get("error", {})
                shaped = set(error) >= {"message", "type", "code"}
                # A 5xx is clean too (the replica it reached was killed and no retry got through), but counted apart.
                result["outcome"] = ("rejected" if r.status_code < 500 else "error") if shaped and r.status_code >= 400 \
                    else "lost"
                result["code"] = error.get("code")
                result["status"] = r.status_code
            else:
                prompt = rng.choice(PROMPTS)
                body = {"model": "soak", "messages": [{"role": "user", "content": prompt}],
                        "max_tokens": rng.randint(8, 32), "temperature": 0.7, "stream": True,
                        "stream_options": {"include_usage": True}}
                result |= {"kind": "stream", "prompt": prompt}
                r = session.post(url, json=body, headers=headers, stream=True, timeout=300)
                result["id"] = r.headers.get("x-request-id")
                result["status"] = r.status_code
                if r.status_code == 200:
                    outcome, details = read_stream(r)
                    result |= {"outcome": outcome, **details}
                else:
                    error = r.json().get("error", {})
                    clean = r.status_code >= 400 and set(error) >= {"message", "type", "code"}
                    result |= {"outcome": "error" if clean else "lost", "code": error.get("code"),
                               "message": error.get("message", "")[:200]}
        except (requests.exceptions.RequestException, ValueError) as e:
            result |= {"outcome": "lost", "exception": repr(e)}
        result["at"] = time.monotonic()
        with lock:
            results.append(result)


def rss_anon_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="traffic duration (default 10)")
    parser.add_argument("--kill-every", type=float, default=120, help="seconds between kill -9 of a worker")
    parser.add_argument("--streams", type=int, default=64, help="concurrent clients")
    parser.add_argument("--bad-fraction", type=float, default=0.1, help="share of malformed requests")
    parser.add_argument("--warmup", type=float, default=60, help="seconds of a process's life before its memory "
                        "baseline")
    parser.add_argument("--memory-slack", type=float, default=0.05, help="allowed growth of private memory after "
                        "warm-up (fraction; plus 4 MiB)")
    parser.add_argument("--report", help="write the figures as JSON here")
    args = parser.parse_args()
    assert 0 < args.minutes <= 60 and 1 <= args.streams <= 256 and args.kill_every >= 10

    tmp = tempfile.mkdtemp(prefix="swiftlet-soak-")
    gateway = Gateway(tmp, config(args))
    failures = []
    try:
        soak_key = gateway.create_key("soak")
        key = soak_key["secret"]
        admin = gateway.create_key("soak-admin", admin=True)["secret"]

        def ready():
            try:
                d = gateway.deployment("soak", admin)
                return d["replicas"]["ready"] >= 2
            except requests.exceptions.RequestException:
                return False
        wait_for(ready, 300, "two ready workers\n" + gateway.process.log(), interval=0.5)

        results, lock = [], threading.Lock()
        start = time.monotonic()
        deadline = start + args.minutes * 60
        threads = [threading.Thread(target=client, args=(gateway, key, deadline, i, args, results, lock), daemon=True)
                   for i in range(args.streams)]
        for t in threads:
            t.start()

        # Memory samples per process: pid -> [(seconds since the process was first seen, RssAnon KiB)].
        memory, first_seen, kills = {}, {}, []
        next_kill = start + args.kill_every
        while time.monotonic() < deadline:
            now = time.monotonic()
            for pid in [gateway.process.pid] + workers_of(gateway.url):
                kib = rss_anon_kib(pid)
                if kib is None:
                    continue
                first_seen.setdefault(pid, now)
                memory.setdefault(pid, []).append((now - first_seen[pid], kib))
            if now >= next_kill:
                workers = workers_of(gateway.url)
                if workers:
                    victim = min(workers, key=lambda p: first_seen.get(p, now))
                    os.killpg(victim, signal.SIGKILL)
                    kills.append({"at": round(now - start, 1), "pid": victim})
                    print(f"[{now - start:6.1f} s] kill -9 worker pid {victim}", flush=True)
                next_kill += args.kill_every
            with lock:
                done = len(results)
            print(f"[{now - start:6.1f} s] {done} requests finished", flush=True)
            time.sleep(min(5, max(0.1, deadline - time.monotonic())))
        for t in threads:
            t.join(timeout=330)
        stuck = sum(t.is_alive() for t in threads)
        elapsed = time.monotonic() - start

        # What the clients saw.
        by = {}
        for r in results:
            by.setdefault((r["kind"], r["outcome"]), []).append(r)
        lost = [r for r in results if r["outcome"] == "lost"]
        if stuck:
            failures.append(f"{stuck} clients still waiting after the deadline")
        if lost:
            failures.append(f"{len(lost)} lost requests, e.g. {lost[:3]}")

        # The ledger against it.
        rows = {row["request_id"]: row for row in gateway.ledger() if row["key_id"] == soak_key["id"]}
        prompt_tokens = {}
        for r in by.get(("stream", "completed"), []):
            prompt_tokens[r["prompt"]] = r["usage"]["prompt_tokens"]
        expected_ids, mismatches = set(), []
        seen = {"prompt": 0, "completion": 0}
        for r in results:
            if r["outcome"] == "lost":
                continue
            reaches = r["kind"] == "stream" or r.get("forwarded")
            if r["id"] is None:
                if reaches and r["kind"] == "stream":
                    mismatches.append(("no request id", r))
                continue
            expected_ids.add(r["id"])
            row = rows.get(r["id"])
            if row is None:
                mismatches.append(("no ledger row", r))
                continue
            if r["outcome"] == "completed":
                u = r["usage"]
                seen["prompt"] += u["prompt_tokens"]
                seen["completion"] += u["completion_tokens"]
                if (row["status"], row["prompt_tokens"], row["completion_tokens"]) != ("completed", u["prompt_tokens"],
                                                                                       u["completion_tokens"]):
                    mismatches.append(("completed", r, row))
            elif r["outcome"] == "interrupted":
                p = prompt_tokens.get(r["prompt"])
                seen["prompt"] += row["prompt_tokens"]
                seen["completion"] += r["chunks"]
                if row["status"] != "interrupted" or row["completion_tokens"] != r["chunks"] or \
                        (p is not None and row["prompt_tokens"] != p) or row["prompt_tokens"] == 0:
                    mismatches.append(("interrupted", r, row))
            else:
                if row["status"] != "failed" or row["prompt_tokens"] + row["completion_tokens"] != 0:
                    mismatches.append(("failed", r, row))
        extra = set(rows) - expected_ids
        if extra:
            mismatches.append(("rows no client saw", sorted(extra)[:5], len(extra)))
        ledger_tokens = {"prompt": sum(r["prompt_tokens"] for r in rows.values()),
                         "completion": sum(r["completion_tokens"] for r in rows.values())}
        if mismatches:
            failures.append(f"{len(mismatches)} ledger mismatches, e.g. {mismatches[:3]}")
        if ledger_tokens != seen:
            failures.append(f"ledger tokens {ledger_tokens} != tokens the clients saw {seen}")

        # Memory: every process's private memory after its warm-up against its last sample.
        memory_report = []
        for pid, samples in memory.items():
            after = [kib for t, kib in samples if t >= args.warmup]
            if len(after) < 2:
                continue
            base, last, peak = after[0], after[-1], max(after)
            lifetime = samples[-1][0]
            role = "gateway" if pid == gateway.process.pid else "worker"
            memory_report.append({"pid": pid, "role": role, "observed_s": round(lifetime), "after_warmup_kib": base,
                                  "last_kib": last, "peak_kib": peak})
            if last > base * (1 + args.memory_slack) + 4096:
                failures.append(f"{role} {pid}: private memory grew from {base} to {last} KiB after warm-up")

        restarts = len(first_seen) - 3  # beyond the gateway and the first two workers
        gateway_alive = gateway.process.alive()
        code = gateway.stop()
        log_path = os.path.join(tmp, "gateway.log")
        with open(log_path, "w") as f:
            f.write("\n".join(gateway.process.lines) + "\n")
        errors = {}
        for r in results:
            if r["outcome"] in ("error", "interrupted"):
                errors[f'{r["status"]} {r.get("code") or r.get("error")}'] = errors.get(f'{r["status"]} {r.get("code") or r.get("error")}', 0) + 1
        figures = {
            "minutes": args.minutes, "streams": args.streams, "elapsed_s": round(elapsed),
            "requests": len(results),
            "outcomes": {f"{k[0]}/{k[1]}": len(v) for k, v in sorted(by.items())},
            "lost": len(lost), "kills": len(kills), "worker_processes_started_after_kills": restarts,
            "ledger_rows": len(rows), "ledger_tokens": ledger_tokens, "client_tokens": seen,
            "ledger_mismatches": len(mismatches),
            "completed_streams_per_s": round(len(by.get(("stream", "completed"), [])) / elapsed, 2),
            "completion_tokens_per_s": round(seen["completion"] / elapsed, 1),
            "clean_errors_by_status_and_code": errors, "gateway_log": log_path,
            "memory": memory_report, "gateway_alive_at_end": gateway_alive, "gateway_exit_code": code,
            "failures": failures,
        }
        if not gateway_alive:
            failures.append("the gateway died")
        if code != 0:
            failures.append(f"the gateway exited with {code} on SIGTERM")
        print(json.dumps(figures, indent=2))
        if args.report:
            with open(args.report, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        if gateway.process.alive():
            gateway.stop()
        kill_all_workers(gateway.url)
        stop_everything()
    if failures:
        print("SOAK FAILED:\n- " + "\n- ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("soak passed")


if __name__ == "__main__":
    main()
