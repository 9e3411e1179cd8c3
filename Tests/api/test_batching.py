"""Continuous batching through the API: concurrent requests get what they get alone, the prefix cache is
used and changes nothing, disconnects and preemption give every KV block back, memory stays flat."""

import concurrent.futures as cf
import os
import time

import requests

from conftest import Server

PROMPTS = [
    "The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 5, 8, 13,", "Translate to French: I like green apples.\nFrench:", "The three primary colors are",
    "SELECT name, COUNT(*) FROM users", "A haiku about the ocean:", "List three fruits:", "The quick brown fox",
    "In 1969, astronauts", "To make bread, first", "The best way to learn Swift is", "Water boils at",
    "My favourite book is", "Rain in the mountains",
]
SYSTEM = "You are a careful assistant. " + "Answer briefly, precisely and politely. " * 24
MODEL = "smollm2"
# End-of-text tokens of SmolLM2 banned so that every request runs to max_tokens.
NO_EOS = {"0": -100, "2": -100}


def completion(server, prompt, max_tokens=16, **extra):
    r = server.post("/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                                        "logit_bias": NO_EOS, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def metric(server, name):
    return server.metrics().get(name, 0.0)


def wait_idle(server, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = server.metrics()
        if m.get("swiftlet_running_sequences", 0) == 0 and m.get("swiftlet_queue_waiting_sequences", 0) == 0 \
                and m.get("swiftlet_kv_blocks_used", 0) == 0:
            return m
        time.sleep(0.1)
    raise AssertionError(f"server not idle: {server.metrics()}")


def test_concurrent_requests_get_what_they_get_alone(server):
    alone = [completion(server, p)["choices"][0]["text"] for p in PROMPTS]
    steps_before = metric(server, "swiftlet_batch_sequences_count")
    seqs_before = metric(server, "swiftlet_batch_sequences_sum")
    with cf.ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: completion(server, p)["choices"][0]["text"], PROMPTS))
    assert together == alone
    steps = metric(server, "swiftlet_batch_sequences_count") - steps_before
    seqs = metric(server, "swiftlet_batch_sequences_sum") - seqs_before
    assert steps > 0 and seqs / steps > 2, f"requests ran together: {seqs / max(steps, 1):.1f} sequences per step"
    wait_idle(server)


def chat(server, question, **extra):
    r = server.post("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "max_tokens": 12, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_shared_prefix_comes_from_the_cache(server):
    hits = metric(server, "swiftlet_prefix_cache_hits_total")
    first = chat(server, "What is 2 + 2?")
    second = chat(server, "Name a colour.")
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 16 * (second["usage"]["prompt_tokens"] // 16 - 2), second["usage"]
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] <= cached
    assert metric(server, "swiftlet_prefix_cache_hits_total") > hits
    assert 0 < metric(server, "swiftlet_prefix_cache_hit_rate") <= 1
    # The same answer without the cache.
    plain = Server("--no-prefix-cache")
    try:
        again = plain.post("/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a colour."}],
            "max_tokens": 12, "temperature": 0}).json()
        assert again["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        assert plain.metrics().get("swiftlet_prefix_cache_hits_total", 0) == 0
    finally:
        plain.stop()


def test_disconnects_give_every_block_back(server):
    def read_a_little(i):
        with requests.post(server.url + "/v1/completions", headers=server.headers(), stream=True, timeout=60, json={
                "model": MODEL, "prompt": PROMPTS[i], "max_tokens": 400, "stream": True, "logit_bias": NO_EOS}) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith(b"data: {"):
                    seen += 1
                    if seen >= 3 + i:
                        return seen
    with cf.ThreadPoolExecutor(8) as pool:
        assert all(n >= 3 for n in pool.map(read_a_little, range(8)))
    m = wait_idle(server)
    assert m["swiftlet_kv_blocks_used"] == 0
    assert m["swiftlet_kv_blocks_free"] == m["swiftlet_kv_blocks_total"]


def test_tiny_kv_pool_preempts_and_every_request_is_right(server):
    prompts = PROMPTS[:8]
    alone = [completion(server, p, 40)["choices"][0]["text"] for p in prompts]
    # 368,640 bytes per block of 16 positions for this model: 6 blocks, and each request needs up to 4.
    tiny = Server("--kv-cache-memory", str(6 * 368_640), "--no-prefix-cache")
    try:
        with cf.ThreadPoolExecutor(len(prompts)) as pool:
            together = list(pool.map(lambda p: completion(tiny, p, 40)["choices"][0]["text"], prompts))
        assert together == alone
        m = wait_idle(tiny)
        assert m["swiftlet_preemptions_total"] > 0
        assert m["swiftlet_kv_blocks_used"] == 0
        # A request that cannot fit in the whole pool is refused at once, not queued forever.
        r = tiny.post("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 500})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    finally:
        tiny.stop()


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def mapping_rss_lines(pid, paths):
    """The Rss lines of /proc/PID/smaps for the mappings of these files."""
    inside = False
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            inside = len(fields) >= 6 and fields[5] in paths
        elif inside and line.startswith("Rss:"):
            yield line


def test_soak_memory_stays_flat():
    """2,000 requests at concurrency 32: the KV pool is all free at the end and private memory grows < 5% after
    warm-up.

    The pool is small (32 MB, 88 blocks): long prompts fill it first, then the prefix cache is evicted from then on
    (cached blocks keep their memory until the pool needs it, up to --kv-cache-memory). Private (anonymous) memory
    is what a leak grows; file-backed pages are the mapped GGUF's embedding rows, paged in as new tokens appear,
    clean and bounded by the file's size."""
    s = Server("--max-queue", "256", "--kv-cache-memory", "32MB")
    try:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
        session.mount("http://", adapter)

        def one(i):
            r = session.post(s.url + "/v1/completions", timeout=120, json={
                "model": MODEL, "prompt": f"Note {i}: {PROMPTS[i % len(PROMPTS)]}", "max_tokens": 4, "temperature": 0.7,
                "seed": i, "stream": i % 2 == 0})
            assert r.status_code == 200, r.text
            return 1

        def fill(i):
            r = session.post(s.url + "/v1/completions", timeout=120, json={
                "model": MODEL, "prompt": f"{i} " + " ".join(["river stone light garden window"] * 60), "max_tokens": 2})
            assert r.status_code == 200, r.text
            return 1

        with cf.ThreadPoolExecutor(32) as pool:
            assert sum(pool.map(fill, range(4))) == 4  # touches every block of the pool
            assert sum(pool.map(one, range(300))) == 300  # warm-up: caches, allocator arenas
            wait_idle(s)
            before = rss_kib(s.proc.pid, "RssAnon")
            assert sum(pool.map(one, range(300, 2000))) == 1700
        m = wait_idle(s)
        after = rss_kib(s.proc.pid, "RssAnon")
        gguf = {line.split()[-1] for line in open(f"/proc/{s.proc.pid}/maps") if line.rstrip().endswith(".gguf")}
        mapped = sum(int(line.split()[1]) for line in mapping_rss_lines(s.proc.pid, gguf))
        assert m["swiftlet_kv_blocks_used"] == 0
        assert after <= before * 1.05, f"private memory grew from {before} to {after} KiB"
        assert len(gguf) == 1 and 0 < mapped * 1024 <= os.path.getsize(gguf.pop()), f"model pages {mapped} KiB"
    finally:
        s.stop()
