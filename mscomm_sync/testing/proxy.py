"""A fault-injecting TCP proxy on 127.0.0.1, to test a service's callers against real failures.

Put a :class:`FaultProxy` between a client and a real server (register the
proxy's URL instead of the server's) and tell it what to do to the
connections it forwards: add latency, reset after some bytes, hang
(blackhole), trickle, or refuse connections outright, for every connection
or a random share of them. The client then meets the very socket errors and
timeouts a network produces, not exceptions raised by a mock.

It forwards bytes without looking at them: a sealed call stays sealed, and
nothing of what passes is logged. It binds to loopback by default and is
meant for tests only.

The proxy owns its threads: one accepts connections and alone opens and
closes the listening socket (:mod:`mscomm_sync.testing.proxy_accept`), and
each connection has one or two of its own
(:mod:`mscomm_sync.testing.proxy_link`). :meth:`FaultProxy.stop` closes every
socket and joins every thread, within a bounded time. A proxy serves from
the process that started it: a forked child must not use it.
"""

from __future__ import annotations

import os
import random as _random
import socket
import threading
import time
from types import TracebackType
from typing import Callable, Optional, Union
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .proxy_accept import Acceptor
from .proxy_link import Link
from .proxy_types import DIRECTIONS, Counters, Fault, ProxyError, ProxyStats

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "DIRECTIONS",
    "Fault",
    "FaultProxy",
    "ProxyError",
    "ProxyStats",
]

#: Seconds a connection waits for the server to accept it.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds :meth:`FaultProxy.stop` and :meth:`FaultProxy.set` wait for the proxy's threads.
DEFAULT_STOP_TIMEOUT = 5.0
_NO_FAULT = Fault()

Upstream = Union[str, tuple[str, int]]


class FaultProxy:
    """Forward TCP connections from ``host:port`` to ``upstream``, injecting a :class:`Fault`.

    Args:
        upstream: the server, as a URL (``http://127.0.0.1:8000``) or a
            ``(host, port)`` pair.
        fault: what to do to connections; ``Fault()`` (the default) forwards
            them untouched. Change it while running with :meth:`set`.
        random: draws which connections a fault with a ``probability``
            applies to; pass a seeded ``random.Random`` for reproducible runs.
        host: the address to listen on.
        port: the port to listen on, ``0`` for a free one.
        connect_timeout: seconds each connection waits for the server.

    Raises:
        ConfigurationError: ``upstream`` or ``fault`` is not valid.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with FaultProxy(server.url, fault=Fault(blackhole=True)) as proxy:
            registry.register("billing", proxy.url)
            ...
            assert proxy.stats().blackholed == 1
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        fault: Optional[Fault] = None,
        random: Optional[_random.Random] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.upstream = _address(upstream)
        self._fault = _checked(fault if fault is not None else _NO_FAULT)
        self._random = random if random is not None else _random.Random()
        self.host = host
        self.connect_timeout = connect_timeout
        self._counters = Counters()
        self._lock = threading.Lock()  # the fault, the links, the state
        self._setting = threading.Lock()  # one set() at a time, so changes apply in order
        self._links: set[Link] = set()
        self._serial = 0
        self._state = "new"  # then "running", then "stopped"
        self._acceptor = Acceptor(
            host, port, on_connection=self._connected, counters=self._counters
        )
        self._pid = os.getpid()

    # -- what it is ------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (after :meth:`start`)."""
        if self._state == "new":
            raise ProxyError("the proxy is not started", port=0, reason="not started")
        return self._acceptor.port

    @property
    def url(self) -> str:
        """The proxy's base URL, e.g. ``http://127.0.0.1:54321``: register this one."""
        return f"http://{self.host}:{self.port}"

    @property
    def fault(self) -> Fault:
        """The fault new connections get."""
        with self._lock:
            return self._fault

    def stats(self) -> ProxyStats:
        """Return the proxy's counts as of now (see :class:`ProxyStats`)."""
        return self._counters.snapshot()

    def wait_for(
        self, condition: Callable[[ProxyStats], bool], timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> ProxyStats:
        """Wait until ``condition(stats)`` holds, at most ``timeout`` seconds.

        Counts change on the proxy's threads (a connection's close, say,
        may come just after the client's call returned); this waits for them
        without sleeping.

        Returns:
            The last snapshot; the condition may not hold if the time ran out.
        """
        return self._counters.wait_for(condition, timeout)

    # -- running ---------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen (unless the fault refuses) and start accepting; returns ``self``.

        Raises:
            ProxyError: the proxy was started before.
            OSError: the address cannot be bound.
        """
        with self._lock:
            if self._state != "new":
                raise ProxyError("a proxy starts once", port=self._acceptor.port, reason="started")
            self._acceptor.start(listening=not self._fault.refuse)
            self._state = "running"
        return self

    def set(
        self, fault: Fault, *, keep_open: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> None:
        """Make ``fault`` the fault of every connection from now on, atomically.

        Connections are given their fault when they are accepted. So that a
        client's pooled keep-alive connections do not escape the new fault,
        the connections already open are closed (with a FIN, as a server
        closing idle connections does) before this returns; a call in
        flight on one of them fails. With ``refuse``, the proxy has stopped
        listening when this returns; without it, it listens again.

        Args:
            fault: the new fault (``Fault()`` for none).
            keep_open: leave the open connections as they are, with the
                fault they were accepted with.
            timeout: seconds to wait for the proxy's threads.

        Raises:
            ConfigurationError: ``fault`` is not a :class:`Fault`.
            ProxyError: the proxy could not listen again on its port, or its
                threads did not answer within ``timeout``.
        """
        _checked(fault)
        with self._setting:
            with self._lock:
                self._fault = fault
                if self._state != "running":
                    return  # before start(), start() uses it; after stop(), nothing does
                dropped = [] if keep_open else list(self._links)
            deadline = time.monotonic() + timeout
            for link in dropped:
                link.end("drop")
            self._acceptor.listen(not fault.refuse, timeout)
            if _join([t for link in dropped for t in link.threads], deadline):
                raise ProxyError(
                    f"the fault proxy's connections did not close within {timeout:g}s",
                    port=self.port,
                    reason="threads still running",
                )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Close every socket (open connections get a FIN) and join every thread.

        Calling it again, or on a proxy never started, does nothing. In a
        forked child it does nothing either: the threads are the parent's.

        Raises:
            ProxyError: some thread did not end within ``timeout`` seconds.
        """
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._state != "running":
                return
            self._state = "stopped"  # from now on, a connection accepted is closed at once
        deadline = time.monotonic() + timeout
        self._acceptor.stop(timeout)
        with self._lock:
            links = list(self._links)
        for link in links:
            link.end("drop")
        threads = [*self._acceptor.threads, *(t for link in links for t in link.threads)]
        alive = _join(threads, deadline)
        if alive:
            raise ProxyError(
                f"{len(alive)} fault proxy thread(s) still running after {timeout:g}s",
                port=self.port,
                reason="threads still running",
            )

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = "not started" if self._state == "new" else f"{self.host}:{self._acceptor.port}"
        kinds = ",".join(sorted(self._fault.kinds)) or "none"
        host, port = self.upstream
        return f"<FaultProxy {where} -> {host}:{port} fault={kinds}>"

    # -- on the acceptor's thread --------------------------------------------------

    def _connected(self, conn: socket.socket) -> None:
        with self._lock:
            if self._state != "running":
                conn.close()
                return
            fault = self._fault if self._applies(self._fault) else _NO_FAULT
            self._serial += 1
            link = Link(
                conn,
                fault=fault,
                upstream=self.upstream,
                connect_timeout=self.connect_timeout,
                counters=self._counters,
                name=f"mscomm-fault-proxy-{self._acceptor.port}-{self._serial}",
                on_done=self._forget,
            )
            self._links.add(link)
        link.start()

    def _applies(self, fault: Fault) -> bool:
        if not fault.kinds or fault.probability <= 0:
            return False
        return fault.probability >= 1 or self._random.random() < fault.probability

    def _forget(self, link: Link) -> None:
        with self._lock:
            self._links.discard(link)


def _join(threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
    """Join ``threads`` until ``deadline``; return those still alive."""
    current = threading.current_thread()
    for thread in threads:
        if thread is not current:
            thread.join(max(deadline - time.monotonic(), 0.0))
    return [t for t in threads if t.is_alive() and t is not current]


def _checked(fault: object) -> Fault:
    if not isinstance(fault, Fault):
        raise ConfigurationError(
            f"a fault proxy takes a Fault, not {type(fault).__name__}",
            variable="fault",
            reason="invalid",
        )
    return fault


def _address(upstream: Upstream) -> tuple[str, int]:
    if isinstance(upstream, tuple):
        host, port = upstream
    else:
        parts = urlsplit(upstream if "//" in upstream else f"//{upstream}")
        try:
            host, port = parts.hostname or "", parts.port or 0
        except ValueError:
            host, port = "", 0
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(
            "the upstream must be a URL or (host, port) with a host and a port",
            variable="upstream",
            reason="invalid",
        )
    return host, port
