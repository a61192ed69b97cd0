"""The runtime of one :class:`~.options.Telemetry`, and the one place OpenTelemetry is imported.

:class:`Instruments` is built once per client, middleware or process. When
OpenTelemetry is off it holds no OpenTelemetry object at all, and the records
it hands out (:mod:`.calls`, :mod:`.serving`) are shared do-nothing ones, so a
call costs what it did before telemetry existed (see ``docs/performance.md``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

from .options import Telemetry

if TYPE_CHECKING:
    from .otel import Otel

__all__ = ["Instruments", "Listener"]

log = logging.getLogger("mscomm_sync.telemetry")

#: A breaker listener: ``listener(breaker, old_state, new_state)``.
Listener = Callable[[Any, str, str], None]


class Instruments:
    """What one :class:`~.options.Telemetry` reports through.

    Attributes:
        config: the settings.
        otel: the OpenTelemetry objects, or ``None`` when it is off.
        access_log: whether access log lines are written.
        active: whether anything at all is reported.
    """

    __slots__ = ("access_log", "active", "config", "otel")

    def __init__(self, config: Telemetry) -> None:
        self.config = config
        self.otel: Optional[Otel] = None
        if config.otel:
            from .otel import Otel  # only now: OpenTelemetry is installed and asked for

            self.otel = Otel(config.tracer_provider, config.meter_provider)
        self.access_log = config.access_log
        self.active = self.otel is not None or self.access_log

    # -- what is counted outside a call or a request --------------------------

    def breaker_listener(self, listener: Optional[Listener]) -> Optional[Listener]:
        """Return a breaker listener that counts transitions, then calls ``listener``."""
        otel = self.otel
        if otel is None:
            return listener

        def counted(breaker: Any, old: str, new: str) -> None:
            otel.breaker_transitions.add(  # type: ignore[attr-defined]
                1,
                {"mscomm.target": breaker.target, "mscomm.breaker.from": old,
                 "mscomm.breaker.to": new},
            )  # fmt: skip
            if listener is not None:
                listener(breaker, old, new)

        return counted

    def replay_error(self, store: str, reason: str) -> None:
        """Count a replay-store failure."""
        if self.otel is not None:
            self._add("replay_errors", {"mscomm.store": store, "mscomm.reason": reason})

    def registry_error(self, registry: str, reason: str) -> None:
        """Count a registry read that failed (the last good data was kept)."""
        if self.otel is not None:
            self._add("registry_errors", {"mscomm.registry": registry, "mscomm.reason": reason})

    def health_probe(self, service: str, passed: bool) -> None:
        """Count one health probe."""
        if self.otel is not None:
            result = "pass" if passed else "fail"
            self._add("health_probes", {"mscomm.target": service, "mscomm.result": result})

    def health_verdict(self, service: str, healthy: bool) -> None:
        """Count one change of an instance's health verdict."""
        if self.otel is not None:
            verdict = "healthy" if healthy else "unhealthy"
            self._add("health_verdicts", {"mscomm.target": service, "mscomm.verdict": verdict})

    def _add(self, instrument: str, attributes: dict[str, Any]) -> None:
        try:
            getattr(self.otel, instrument).add(1, attributes)
        except Exception:  # an exporter's failure must never fail the code measured
            log.exception(
                "telemetry: counting %s failed", instrument,
                extra={"mscomm.event": "telemetry error", "mscomm.instrument": instrument},
            )  # fmt: skip

    def __repr__(self) -> str:
        return f"<Instruments otel={self.otel is not None} access_log={self.access_log}>"
