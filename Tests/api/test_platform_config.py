"""`swiftlet gateway --check`: the example config validates; a bad one is refused with each error's line and field."""

import os
import subprocess

from conftest import BIN, ROOT


def check(path):
    return subprocess.run([BIN, "gateway", "--config", path, "--check"], capture_output=True, text=True, timeout=60)


def test_example_config_validates():
    r = check(os.path.join(ROOT, "swiftlet.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_errors_name_field_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters:\n  - name: a\ndeployments:\n  - name: chat\n    model: smollm2\n"
                   "    replicas: {min: 2, max: 1}\n    placment: [a]\n")
    r = check(str(bad))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert f"{bad}: line 6, column 29: deployments[0].replicas.max: must be >= replicas.min (2)" in lines
    assert any("line 7" in l and "deployments[0].placment" in l and "unknown field" in l for l in lines), lines


def test_missing_file(tmp_path):
    r = check(str(tmp_path / "none.yaml"))
    assert r.returncode == 1 and "cannot read" in r.stderr
