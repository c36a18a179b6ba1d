"""A slow-header flood on 127.0.0.1: good requests keep their answers, stalled connections are closed.

The flood comes from 127.0.0.2 (all of 127/8 is loopback), the good client from 127.0.0.1, so
the per-address cap applies to the flood only. Without the cap its 100 stalled connections
would exceed uvicorn's concurrency limit (64 here) and every good request would get 503;
without the header deadline they would stay open for as long as the flood likes.
"""

from __future__ import annotations

import socket
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from resnetkit.engine import load_run  # noqa: E402
from resnetkit.serve import BackgroundServer, ServeConfig, create_app  # noqa: E402

FLOOD = 100
CAP = 16
HEADER_TIMEOUT_S = 1.5


def _stalled(port: int, source: str) -> socket.socket:
    """A connection that sends half of a request's headers, then nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
    return sock


def _answer(sock: socket.socket) -> bytes:
    try:
        return sock.recv(200)
    except (ConnectionResetError, socket.timeout):
        return b""


def test_slow_header_flood_does_not_starve_good_requests(image_run, data_path):
    photo = next((data_path("cifar10/train") / "cat").glob("*.jpg")).read_bytes()
    config = ServeConfig(max_queue=8, header_timeout_s=HEADER_TIMEOUT_S, max_connections_per_client=CAP)
    with BackgroundServer(create_app(load_run(image_run), config)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v1/predict", content=photo).status_code == 200
        flood = [_stalled(server.port, "127.0.0.2") for _ in range(FLOOD)]
        started = time.monotonic()
        try:
            # While the flood holds its connections, the good client is answered.
            statuses = [client.post("/v1/predict", content=photo).status_code for _ in range(5)]
            assert statuses == [200] * 5, statuses
            assert time.monotonic() - started < HEADER_TIMEOUT_S, "the good requests must run while the flood stalls"

            answers = [_answer(sock) for sock in flood]
            waited = time.monotonic() - started
        finally:
            for sock in flood:
                sock.close()
        refused = sum(a.startswith(b"HTTP/1.1 429") for a in answers)
        timed_out = sum(a.startswith(b"HTTP/1.1 408") for a in answers)
        assert refused == FLOOD - CAP, answers[:3]
        assert timed_out == CAP, [a for a in answers if not a.startswith(b"HTTP/1.1 429")][:3]
        assert waited < HEADER_TIMEOUT_S + 5, f"stalled connections were closed after {waited:.1f} s"

        # The flood's address is free again once its connections are gone: a complete request is served.
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as c:
            assert c.get("/healthz").status_code == 200


def test_limits_are_validated():
    with pytest.raises(ValueError, match="header_timeout_s must be > 0"):
        ServeConfig(header_timeout_s=0).validate()
    with pytest.raises(ValueError, match="max_connections_per_client must be a whole number >= 0"):
        ServeConfig(max_connections_per_client=-1).validate()
    ServeConfig(max_connections_per_client=0).validate()  # 0: no cap
