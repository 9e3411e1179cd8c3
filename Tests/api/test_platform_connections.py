"""The gateway's listener, like serve's: silent or half-sent client connections are closed after
gateway.idle_timeout, and no more than gateway.max_connections are served at once."""

import socket

import pytest
import requests

from conftest import assert_connection_cap, read_until_closed, trickle_body
from platform_support import running_gateway

CONFIG = """
gateway:
  require_api_key: false
  idle_timeout: 3s
  max_connections: 3
  body_timeout: 2s
clusters:
  - {name: remote}
deployments:
  - name: chat
    model: smollm2
    replicas: {min: 0, max: 1}
    placement: [remote]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_gateway(str(tmp_path_factory.mktemp("connections")), CONFIG) as g:
        yield g


def test_half_sent_and_silent_connections_are_closed(gateway):
    half = socket.create_connection(("127.0.0.1", gateway.port), timeout=60)
    half.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    silent = socket.create_connection(("127.0.0.1", gateway.port), timeout=60)
    for s in (half, silent):
        read_until_closed(s)  # the hang guard is the socket's 60 s timeout
        s.close()
    assert requests.get(gateway.url + "/health", timeout=10).status_code == 200


def test_a_trickled_body_gets_408(gateway):
    reply = trickle_body(gateway.port, "/v1/chat/completions")
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert requests.get(gateway.url + "/health", timeout=10).status_code == 200


def test_connections_over_the_cap_wait_until_one_closes(gateway):
    assert_connection_cap(gateway.port, gateway.url, 3)
