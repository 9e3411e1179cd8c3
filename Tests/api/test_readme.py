"""The README's `curl` and Python examples of the Serve section work as printed (only the port differs); those
naming the embedding model run against a server of it."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, Server

PRINTED = "http://127.0.0.1:8080"


def serve_section():
    text = open(os.path.join(ROOT, "README.md")).read()
    start = text.index("## Serve")
    return text[start:text.index("\n## ", start + 1)]


def blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", serve_section(), re.S)


def curl_commands():
    """Each `curl` command of the sh blocks, continuation lines joined."""
    commands = []
    for block in blocks("sh"):
        joined = re.sub(r"\\\n", " ", block)
        current = None
        for line in joined.splitlines():
            if current is not None and "\n".join(current).count("'") % 2 == 1:
                current.append(line)  # inside a quoted multi-line JSON body
            elif line.startswith("curl "):
                current = [line]
                commands.append(current)
            else:
                current = None
    return ["\n".join(c) for c in commands]


EMBEDDING_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def servers():
    plain = Server()
    keyed = embedding = None
    try:
        keyed = Server(api_key="secret")
        embedding = Server(model=EMBEDDING_MODEL)
        yield plain, keyed, embedding
    finally:
        for s in (plain, keyed, embedding):
            if s:
                s.stop()


def test_curl_examples(servers):
    plain, keyed, embedding = servers
    commands = curl_commands()
    assert len(commands) >= 6
    for command in commands:
        target = keyed if "Bearer secret" in command else embedding if EMBEDDING_MODEL in command else plain
        assert PRINTED in command
        r = subprocess.run(["bash", "-c", "set -o pipefail; " + command.replace(PRINTED, target.url)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (command, r.stderr)
        out = r.stdout.strip()
        assert out, command
        if out.startswith("data: "):
            events = [e for e in out.split("\n\n") if e]
            assert events[-1] == "data: [DONE]"
            assert all(json.loads(e[len("data: "):]) for e in events[:-1])
        elif out.startswith("{"):
            assert "error" not in json.loads(out), out
        else:
            assert re.search(r"^swiftlet_generated_tokens_total [0-9.]+$", out, re.M), out


def test_python_examples(servers):
    plain, _, embedding = servers
    codes = blocks("python")
    assert len(codes) >= 4
    for code in codes:
        target = embedding if EMBEDDING_MODEL in code else plain
        r = subprocess.run([sys.executable, "-c", code.replace(PRINTED, target.url)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.strip().splitlines()) >= 2
