"""Starts `swiftlet serve` as a subprocess on 127.0.0.1 (a free port) for the API tests, and always stops it.

SWIFTLET_BIN picks the binary (default .build/release/swiftlet); SWIFTLET_MODEL_PATH the model file (default:
the server's default model, which scripts/test has fetched).
"""

import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SWIFTLET_BIN", os.path.join(ROOT, ".build", "release", "swiftlet"))
MODEL = os.environ.get("SWIFTLET_MODEL_PATH")
API_KEY = "test-key"
THREADS = "2"
LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")


def model_args():
    return ["--model", MODEL] if MODEL else []


class Server:
    """A running `swiftlet serve`: its base URL, and its stderr log as lines."""

    def __init__(self, *extra_args, api_key=None, model=None):
        """model: a known name or path instead of the default test model."""
        chosen = ["--model", model] if model else model_args()
        args = [BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--threads", THREADS, *chosen, *extra_args]
        if api_key:
            args += ["--api-key", api_key]
        env = {k: v for k, v in os.environ.items() if k != "SWIFTLET_API_KEY"}
        self.api_key = api_key
        self.lines = []
        self._bound = threading.Event()
        self.port = None
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                                     errors="replace")
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _read_log(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = LISTENING.search(line)
            if m and self.port is None:
                self.port = int(m.group(2))
                self._bound.set()

    def _wait_until_ready(self):
        if not self._bound.wait(timeout=120):
            raise RuntimeError("server did not log 'listening on':\n" + "\n".join(self.lines))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + "\n".join(self.lines))
            try:
                if requests.get(self.url + "/ready", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server never became ready:\n" + "\n".join(self.lines))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def post(self, path, json=None, **kw):
        headers = {**self.headers(), **kw.pop("headers", {})}
        return requests.post(self.url + path, json=json, headers=headers, timeout=300, **kw)

    def get(self, path, **kw):
        headers = {**self.headers(), **kw.pop("headers", {})}
        return requests.get(self.url + path, headers=headers, timeout=60, **kw)

    def metrics(self):
        """Prometheus samples as {'name{labels}': value}."""
        text = requests.get(self.url + "/metrics", timeout=60).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def stop(self):
        """SIGTERM (graceful shutdown), then SIGKILL if it takes too long. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    s = Server(api_key=API_KEY)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def model_id(client):
    return client.models.list().data[0].id


def run_cli(*args):
    """Runs the CLI on the same model; returns (stdout, stderr)."""
    r = subprocess.run([BIN, *args, *model_args(), "--threads", THREADS], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def printed(text, chat=False):
    """What `swiftlet generate` prints for a generated text: a newline is added after chat replies and after
    text that does not end with one."""
    return text + "\n" if chat or not text.endswith("\n") else text


def cli_generate(prompt, max_tokens, chat=False, system=None, stop=()):
    """Greedy `swiftlet generate`: (stdout, prompt token count, generated token count)."""
    args = ["generate", "--prompt", prompt, "--temperature", "0", "--max-tokens", str(max_tokens)]
    if chat:
        args.append("--chat")
    if system is not None:
        args += ["--system", system]
    for s in stop:
        args += ["--stop", s]
    out, err = run_cli(*args)
    m = re.search(r"prompt tokens: (\d+), generated tokens: (\d+)", err)
    assert m, err
    return out, int(m.group(1)), int(m.group(2))


def assert_connection_cap(port, url, cap):
    """With `cap` connections held open (each answered once first, so the server and not only the kernel has
    taken it), a further request is not served until one of them closes."""
    import http.client
    held = []
    try:
        for _ in range(cap):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/health")
            assert c.getresponse().read() is not None
            held.append(c)
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(url + "/health", timeout=1.5)
        held.pop().close()
        assert requests.get(url + "/health", timeout=60).status_code == 200
    finally:
        for c in held:
            c.close()


def read_until_closed(s):
    """Everything the peer sends on socket s until it closes the connection."""
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def trickle_body(port, path):
    """Sends a request whose body comes a byte every half second and never ends; returns what the server
    answered before it closed the connection (30 s hang guard)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
              + b"Content-Length: 200\r\n\r\n{")
    s.settimeout(0.5)
    reply, deadline = b"", time.time() + 30
    while time.time() < deadline:
        try:
            s.sendall(b" ")  # never idle, never done
        except OSError:
            break
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        except socket.timeout:
            continue
    s.close()
    return reply
