"""Running the app with uvicorn: in the foreground (``resnetkit serve``) or in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Optional

from .config import ServeConfig


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 8000, access_log: bool = True,
                   log_level: str = "info"):
    """uvicorn's settings for ``app``, with the limits of the ServeConfig it was created with."""
    import uvicorn

    from .connections import guarded_protocol

    limits = getattr(app.state, "serve_config", None) or ServeConfig()
    # Connections beyond this get uvicorn's 503 before their bodies are read: a bound on the
    # memory that uploads in flight can take (each is read whole, up to the size limit).
    return uvicorn.Config(app, host=host, port=port, access_log=access_log, log_level=log_level,
                          limit_concurrency=max(64, 2 * limits.max_queue), timeout_graceful_shutdown=5,
                          http=guarded_protocol(limits.header_timeout_s, limits.max_connections_per_client))


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, access_log: bool = True,
          log_level: str = "info") -> None:
    """Serve ``app`` (from :func:`create_app`, whose ServeConfig sets the limits) until Ctrl-C."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port, access_log, log_level)).run()


class BackgroundServer:
    """``with BackgroundServer(app) as server: httpx.get(server.url + "/healthz")``.

    Listens on 127.0.0.1 on a free port (the socket is bound before the thread starts, so
    there is no race for the port) and stops, waiting for the thread, on exit.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 startup_timeout: float = 120.0) -> None:
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.startup_timeout = startup_timeout
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self._socket: Optional[socket.socket] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "BackgroundServer":
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn_config(self.app, self.host, self.port, access_log=False, log_level=self.log_level)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="resnetkit-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise TimeoutError(f"the server did not start within {self.startup_timeout:g} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        if self._socket is not None:
            self._socket.close()
