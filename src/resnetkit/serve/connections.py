"""Connections that stall or pile up: a deadline for a request's headers and a cap per client address.

uvicorn counts every open connection against its concurrency limit and answers 503 above
it, but it never times out a request whose headers are still arriving. A few hundred
connections that each send half a header and wait (a slow-header flood) then make every
good request answer 503 for as long as they stay open. Two bounds keep the server serving:

- a request must send its headers within ``header_timeout_s`` of its first byte (or of the
  connection, for the first one); otherwise it gets ``408`` and the connection is closed;
- one client address may hold ``max_connections_per_client`` connections; one more gets
  ``429`` at once, before any of its bytes are read.

Behind a reverse proxy every client has the proxy's address: set the cap to 0 (off) there
and let the proxy bound connections per client (the README says how).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def guarded_protocol(header_timeout_s: float, max_connections_per_client: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with both bounds; each server gets its own class (its own counts)."""
    per_client: Counter[str] = Counter()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_deadline: Optional[asyncio.TimerHandle] = None
        _address: Optional[str] = None  # set while this connection counts against its client

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, (tuple, list)) and peer else None
            if max_connections_per_client and address is not None and \
                    per_client[address] >= max_connections_per_client:
                transport.write(_response("429 Too Many Requests",
                                          f"this address holds {max_connections_per_client} connections already\n"))
                transport.close()
                self.transport = transport
                return
            if address is not None:
                per_client[address] += 1
                self._address = address
            super().connection_made(transport)
            self._arm_header_deadline()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm_header_deadline()
            if self._address is None and self.flow is None:  # refused in connection_made: uvicorn never saw it
                return
            if self._address is not None:
                per_client[self._address] -= 1
                if per_client[self._address] <= 0:
                    del per_client[self._address]
                self._address = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_deadline()  # a keep-alive connection's next request: its own deadline

        def on_headers_complete(self) -> None:
            self._disarm_header_deadline()
            super().on_headers_complete()

        def _arm_header_deadline(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_too_slow(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                self.transport.write(_response("408 Request Timeout",
                                               f"the request's headers did not arrive within {header_timeout_s:g} s\n"))
                self.transport.close()

    return GuardedHttpToolsProtocol
