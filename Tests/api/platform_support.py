"""Real platform processes on 127.0.0.1 for the platform tests: a gateway (`swiftlet gateway`), workers
(`swiftlet worker`) started by the tests as remote hosts would start them, the `keys` and `usage` commands,
and cleanup that leaves no process behind (supervised workers included) even when a test fails."""

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import requests

from conftest import BIN, MODEL

LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")
MODEL_SOURCE = MODEL or "smollm2"
WORKER_ARGS = ["--threads", "1", "--kv-cache-memory", "32MB", "--max-sequences", "8", "--context-length", "1024"]
_started = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_of(gateway_url):
    """Pids of every `swiftlet worker` process registered to this gateway URL (supervised or not)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if b"worker" in args and gateway_url.encode() in args:
            pids.append(int(entry))
    return pids


def kill_all_workers(gateway_url):
    for pid in workers_of(gateway_url):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Process:
    """A child process with its stderr collected as lines."""

    def __init__(self, args, env=None):
        self.args = args
        self.lines = []
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     errors="replace", env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        _started.append(self)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def kill9(self):
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout=60):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode

    def log(self):
        return "\n".join(self.lines[-80:])


def stop_everything():
    for p in reversed(_started):
        try:
            if p.alive():
                os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@contextlib.contextmanager
def running_gateway(directory, config_text, **kwargs):
    """A Gateway for the block; afterwards it is stopped, its workers killed and every process it left ended."""
    g = None
    try:
        g = Gateway(directory, config_text, **kwargs)
        yield g
    finally:
        if g is not None:
            g.stop()
            kill_all_workers(g.url)
        stop_everything()


class Gateway:
    """`swiftlet gateway` on a fixed free port (so that a restart comes back where workers look for it)."""

    def __init__(self, tmp_path, config_text, token="test-cluster-token"):
        self.dir = tmp_path
        self.config = os.path.join(tmp_path, "swiftlet.yaml")
        self.db = os.path.join(tmp_path, "platform.db")
        self.token = token
        with open(self.config, "w") as f:
            f.write(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.start()

    def start(self):
        env = {k: v for k, v in os.environ.items() if k not in ("SWIFTLET_API_KEY", "SWIFTLET_CLUSTER_TOKEN")}
        self.process = Process([BIN, "gateway", "--config", self.config, "--db", self.db, "--host", "127.0.0.1",
                                "--port", str(self.port), "--shutdown-grace", "20"], env=env)
        try:
            wait_for(lambda: any(LISTENING.search(l) for l in self.process.lines) or not self.process.alive(), 60,
                     "the gateway to listen")
            assert self.process.alive(), self.process.log()
        except BaseException:
            self.stop()
            raise

    def stop(self):
        code = self.process.terminate()
        kill_all_workers(self.url)
        return code

    def kill9(self):
        self.process.kill9()

    def cli(self, *args, check=True):
        r = subprocess.run([BIN, *args, "--db", self.db], capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def create_key(self, name="test", **limits):
        args = ["keys", "create", "--name", name, "--json"]
        for flag, value in limits.items():
            if value is True:
                args.append("--" + flag.replace("_", "-"))
            elif value is not False:
                args += ["--" + flag.replace("_", "-"), str(value)]
        return json.loads(self.cli(*args).stdout)

    def get(self, path, key=None, **kw):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.get(self.url + path, headers=headers, timeout=60, **kw)

    def post(self, path, body, key=None, stream=False, timeout=120):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.post(self.url + path, json=body, headers=headers, stream=stream, timeout=timeout)

    def deployment(self, name, key=None):
        r = self.get("/v1/deployments", key)
        assert r.status_code == 200, r.text
        return next(d for d in r.json()["data"] if d["name"] == name)

    def replicas(self, name, key=None):
        d = self.deployment(name, key)
        return [r | {"cluster": c["name"]} for c in d["clusters"] for r in c["replicas"]]

    def metrics(self):
        out = {}
        for line in requests.get(self.url + "/metrics", timeout=30).text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def ledger(self):
        """Rows of the usage ledger, read straight from the SQLite file (as an auditor would)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM usage_record")]
        finally:
            con.close()


class WorkerProcess(Process):
    """`swiftlet worker` started by hand, as on another host."""

    def __init__(self, gateway, deployment, cluster, replica_id):
        self.replica_id = replica_id
        env = {k: v for k, v in os.environ.items() if k not in ("SWIFTLET_API_KEY", "SWIFTLET_CLUSTER_TOKEN")}
        super().__init__([BIN, "worker", "--deployment", deployment, "--cluster", cluster, "--gateway", gateway.url,
                          "--token", gateway.token, "--replica-id", replica_id, "--host", "127.0.0.1", "--port", "0",
                          "--model", MODEL_SOURCE, *WORKER_ARGS], env=env)


def stream_outcome(response):
    """Reads an SSE response to its end: ('completed', text) when it ends with a finish reason and [DONE],
    ('error', error) for an error event followed by [DONE]; anything else is ('broken', details)."""
    text, finished, error, done = "", False, None, False
    try:
        lines = list(response.iter_lines())
    except requests.exceptions.RequestException as e:
        return "broken", {"exception": repr(e)}
    for raw in lines:
        if not raw:
            continue
        line = raw.decode()
        assert line.startswith("data: "), line
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        assert not done, "event after [DONE]"
        event = json.loads(data)
        if "error" in event:
            error = event["error"]
            continue
        for choice in event.get("choices", []):
            text += (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            if choice.get("finish_reason"):
                finished = True
    if done and error is not None:
        return "error", error
    if done and finished:
        return "completed", text
    return "broken", {"done": done, "finished": finished, "text": text}
