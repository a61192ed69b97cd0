"""A real threaded WSGI server on 127.0.0.1, in a thread this object owns."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Optional

__all__ = ["LiveServer"]


class LiveServer:
    """Serve a WSGI app on ``127.0.0.1`` from a background thread.

    It uses werkzeug's threaded HTTP/1.1 server (one thread per connection),
    which is real sockets and real HTTP, not a test client. werkzeug closes
    every connection after one response, so this server cannot show
    keep-alive effects (pooled sockets); use waitress or gunicorn for those.

    Args:
        app: the WSGI application.
        host: the loopback address to bind.
        port: the port, ``0`` for a free one.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with LiveServer(app) as server:
            requests.get(server.url + "/health")
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> LiveServer:
        """Bind the socket and start serving; returns ``self``."""
        from werkzeug.serving import WSGIRequestHandler, make_server

        class _QuietHandler(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

            def log(self, *args: Any, **kwargs: Any) -> None:
                pass

        self._server = make_server(
            self.host, self._requested_port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"mscomm-live-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<LiveServer {where}>"
