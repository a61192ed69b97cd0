"""What a fault proxy does to the connections it forwards, and what it counts.

:class:`Fault` is the frozen, validated description of one fault (or of
none); :class:`ProxyStats` is a snapshot of the counts a
:class:`~mscomm_sync.testing.proxy.FaultProxy` keeps; :class:`ProxyError`
is what the proxy raises when it cannot do what it was asked.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Optional

import attrs

from ..errors import ConfigurationError, MscommError

__all__ = ["DIRECTIONS", "Fault", "ProxyError", "ProxyStats"]

#: The two ways bytes cross the proxy: ``upstream`` from the client to the
#: server (the requests), ``downstream`` from the server to the client (the answers).
DIRECTIONS = frozenset({"upstream", "downstream"})


class ProxyError(MscommError):
    """A fault proxy could not do what it was asked.

    Attributes:
        port: the proxy's port.
        reason: what went wrong (``port taken``, ``threads still running``, ...).
    """

    def __init__(self, message: str, *, port: int, reason: str) -> None:
        super().__init__(message)
        self.port = port
        self.reason = reason


def _invalid(name: str, rule: str) -> ConfigurationError:
    return ConfigurationError(f"Fault.{name} must be {rule}", variable=name, reason="invalid")


def _seconds(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(attr.name, "a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise _invalid(attr.name, f"a finite number >= 0, not {value!r}")


def _bytes(minimum: int) -> Any:
    def check(_inst: Any, attr: attrs.Attribute[Any], value: Optional[int]) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _invalid(attr.name, f"None or an integer >= {minimum}, not {value!r}")

    return check


def _direction(_inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    if value not in DIRECTIONS:
        raise _invalid(attr.name, f"one of {sorted(DIRECTIONS)}, not {value!r}")


def _probability(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    _seconds(_inst, attr, value)  # a finite number >= 0 ...
    if value > 1:
        raise _invalid(attr.name, f"between 0 and 1, not {value!r}")  # ... and <= 1


@attrs.frozen(kw_only=True)
class Fault:
    """What a fault proxy does to each new connection; ``Fault()`` forwards untouched.

    Several settings may be combined (latency and a reset, say); a
    connection the fault applies to gets all of them. Bytes are counted per
    connection, across every request a keep-alive connection carries.

    Attributes:
        latency: seconds to wait, once per connection, before connecting to
            the server and forwarding anything (the client's connect
            succeeds at once; its first answer comes this much later).
        chunk_latency: seconds to wait before forwarding each chunk read,
            either way.
        reset_after: reset the connection (a TCP RST to both sides, through
            ``SO_LINGER`` 0) once this many bytes have been forwarded in
            ``reset_direction``; ``0`` resets before any is: upstream, as soon
            as the connection is accepted; downstream, when the server's
            first answer bytes arrive (the server has run the request).
            ``None``: no reset.
        reset_direction: ``"upstream"`` (request bytes) or ``"downstream"``
            (answer bytes).
        blackhole: accept the connection, read and drop what the client
            sends, and never connect to the server nor answer: a hung
            instance.
        trickle: forward at most this many bytes per ``trickle_interval`` in
            ``trickle_direction`` (the first piece at once); ``None``: no
            trickle.
        trickle_interval: seconds between trickled pieces.
        trickle_direction: ``"upstream"`` or ``"downstream"`` (the default:
            a slow answer).
        refuse: stop listening, so that connections are refused
            (``ECONNREFUSED``) by the kernel; the port stays reserved and the
            proxy listens again when a fault without ``refuse`` is set.
            Refused connections never reach the proxy and are not counted.
        probability: the share of new connections the fault applies to,
            drawn from the proxy's ``random``; the others are forwarded
            untouched. ``refuse`` applies to every connection.

    Raises:
        ConfigurationError: a value is out of range, or the settings
            contradict each other (``refuse`` or ``blackhole`` with anything
            that forwards bytes, ``refuse`` with a ``probability``).
    """

    latency: float = attrs.field(default=0.0, validator=_seconds)
    chunk_latency: float = attrs.field(default=0.0, validator=_seconds)
    reset_after: Optional[int] = attrs.field(default=None, validator=_bytes(0))
    reset_direction: str = attrs.field(default="downstream", validator=_direction)
    blackhole: bool = False
    trickle: Optional[int] = attrs.field(default=None, validator=_bytes(1))
    trickle_interval: float = attrs.field(default=0.05, validator=_seconds)
    trickle_direction: str = attrs.field(default="downstream", validator=_direction)
    refuse: bool = False
    probability: float = attrs.field(default=1.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        forwarding = {
            "latency": self.latency > 0,
            "chunk_latency": self.chunk_latency > 0,
            "reset_after": self.reset_after is not None,
            "trickle": self.trickle is not None,
        }
        for name in ("refuse", "blackhole"):
            if getattr(self, name):
                clash = sorted(n for n, on in forwarding.items() if on)
                if name == "refuse" and self.blackhole:
                    clash.insert(0, "blackhole")
                if clash:
                    raise ConfigurationError(
                        f"Fault.{name} forwards nothing, so it cannot be combined with"
                        f" {', '.join(clash)}",
                        variable=name,
                        reason="contradictory",
                    )
        if self.refuse and self.probability != 1:
            raise ConfigurationError(
                "Fault.refuse stops listening for every connection: it takes no probability",
                variable="probability",
                reason="contradictory",
            )

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of fault this sets: ``latency``, ``reset``, ``blackhole``, ``trickle``,
        ``refuse``; empty for ``Fault()``."""
        found = {
            "latency": self.latency > 0 or self.chunk_latency > 0,
            "reset": self.reset_after is not None,
            "blackhole": self.blackhole,
            "trickle": self.trickle is not None,
            "refuse": self.refuse,
        }
        return frozenset(k for k, on in found.items() if on)


@attrs.frozen(kw_only=True)
class ProxyStats:
    """A snapshot of a fault proxy's counts, taken at once under its lock.

    Attributes:
        connections: connections accepted.
        active: connections open now.
        clean: connections forwarded untouched (no fault set, or spared by
            its probability).
        delayed: connections given ``latency`` or ``chunk_latency``.
        reset: connections the fault reset (sent an RST); resets that only
            pass one side's reset on to the other are not counted.
        blackholed: connections accepted and never answered.
        trickled: connections trickled.
        dropped: connections the proxy closed itself, when a new fault was
            set or when it stopped.
        upstream_failures: connections reset because the server could not be
            reached.
        bytes_upstream: bytes forwarded from clients to the server.
        bytes_downstream: bytes forwarded from the server to clients.
        refusing: whether the proxy is refusing connections now.
    """

    connections: int = 0
    active: int = 0
    clean: int = 0
    delayed: int = 0
    reset: int = 0
    blackholed: int = 0
    trickled: int = 0
    dropped: int = 0
    upstream_failures: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    refusing: bool = False


_COUNTS = tuple(a.name for a in attrs.fields(ProxyStats) if a.name != "refusing")


class Counters:
    """The proxy's live counts, thread-safe; :meth:`snapshot` gives a :class:`ProxyStats`.

    Every change wakes the threads waiting in :meth:`wait_for`.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._counts = dict.fromkeys(_COUNTS, 0)
        self._refusing = False

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the count ``name`` (a :class:`ProxyStats` field)."""
        with self._changed:
            self._counts[name] += n
            self._changed.notify_all()

    def set_refusing(self, refusing: bool) -> None:
        """Record whether the proxy is refusing connections."""
        with self._changed:
            self._refusing = refusing
            self._changed.notify_all()

    def snapshot(self) -> ProxyStats:
        """Return every count as of now, taken together."""
        with self._changed:
            return self._snapshot_locked()

    def wait_for(self, condition: Callable[[ProxyStats], bool], timeout: float) -> ProxyStats:
        """Wait until ``condition(stats)`` holds or ``timeout`` seconds pass.

        Returns:
            The last snapshot (check it: the condition may not hold after a timeout).
        """
        with self._changed:
            self._changed.wait_for(lambda: condition(self._snapshot_locked()), timeout)
            return self._snapshot_locked()

    def _snapshot_locked(self) -> ProxyStats:
        return ProxyStats(refusing=self._refusing, **self._counts)

    def __repr__(self) -> str:
        with self._changed:
            return f"<Counters connections={self._counts['connections']}>"
