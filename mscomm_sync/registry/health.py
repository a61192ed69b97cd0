"""Health polling: GET each instance's health endpoint, with hysteresis.

Health state is kept per process, not written back to the registry: each
process judges reachability from where it stands, a verdict never needs a
write (so a thousand callers do not hammer the file or etcd), and a stale
verdict cannot outlive the process that made it. An instance nobody has
checked yet counts as healthy.
"""

from __future__ import annotations

import logging
import os
import random as _random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Optional

import attrs
import requests

from ..telemetry.instruments import Instruments
from ..telemetry.options import TelemetryOption, resolve
from ..telemetry.process import quiet_instruments
from .base import Instance
from .probe import ProbeResult, describe_failure
from .worker import PeriodicWorker, reset_after_fork

__all__ = [
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "HealthCheckConfig",
    "HealthPoller",
    "ProbeResult",
]

log = logging.getLogger("mscomm_sync.registry")

#: Seconds between health sweeps unless configured otherwise.
DEFAULT_HEALTH_CHECK_INTERVAL = 10.0

Key = tuple[str, str]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen(kw_only=True)
class HealthCheckConfig:
    """How health checks run.

    Attributes:
        interval: seconds between sweeps.
        timeout: connect and read timeout of one probe, in seconds.
        rise: consecutive passes that make an unhealthy instance healthy.
        fall: consecutive failures that make a healthy instance unhealthy.
        jitter: fraction by which each interval varies (``0 <= jitter < 1``).
        max_workers: the most probes in flight at once.
    """

    interval: float = attrs.field(default=DEFAULT_HEALTH_CHECK_INTERVAL, validator=_positive)
    timeout: float = attrs.field(default=2.0, validator=_positive)
    rise: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    fall: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
    )
    max_workers: int = attrs.field(default=32, validator=attrs.validators.ge(1))


@attrs.define
class _Verdict:
    healthy: bool = True
    passes: int = 0
    failures: int = 0
    checked_at: Optional[float] = None
    last: Optional[ProbeResult] = None


class HealthPoller(PeriodicWorker):
    """Probe instances on an owned thread and keep a per-process verdict.

    It is a :class:`PeriodicWorker` whose step is :meth:`poll_once`: ``start``,
    ``stop``, ``run_due``, ``ensure_running`` and ``with poller:`` work as
    there, and ``stop`` also frees the probe threads and their sessions.

    An instance becomes unhealthy after ``fall`` consecutive failed probes and
    healthy again after ``rise`` consecutive passes. A probe passes when the
    health endpoint answers 2xx within ``timeout``.

    Args:
        targets: returns the instances to probe; called once per sweep.
        config: intervals, thresholds and concurrency.
        on_change: called with the set of unhealthy ``(service, url)`` pairs
            whenever that set changes.
        clock: a monotonic clock in seconds (drives scheduling and
            ``checked_at``).
        random: returns a float in ``[0, 1)``; drives the jitter.
        session_factory: makes the ``requests.Session`` each probe thread uses.
        telemetry: what counts probes and verdicts (``mscomm.health.*``):
            settings, ``True``, ``False``, or ``None`` for the process's
            default (:func:`~mscomm_sync.initialize_telemetry`).
    """

    def __init__(
        self,
        targets: Callable[[], Iterable[Instance]],
        *,
        config: Optional[HealthCheckConfig] = None,
        on_change: Optional[Callable[[frozenset[Key]], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        session_factory: Callable[[], requests.Session] = requests.Session,
        telemetry: TelemetryOption = None,
    ) -> None:
        self.config = config if config is not None else HealthCheckConfig()
        self._targets = targets
        self._on_change = on_change
        self._session_factory = session_factory
        settings = resolve(telemetry)
        self._telemetry = None if settings is None else Instruments(settings)
        self._verdicts: dict[Key, _Verdict] = {}
        self._unhealthy: frozenset[Key] = frozenset()
        self._sweep_lock = threading.Lock()
        self._pid = os.getpid()
        self._executor: Optional[ThreadPoolExecutor] = None
        self._sessions: list[requests.Session] = []
        self._local = threading.local()
        self.last_sweep_seconds: Optional[float] = None
        reset_after_fork(self)
        super().__init__(
            self.poll_once,
            name="mscomm-health-poller",
            interval=self.config.interval,
            jitter=self.config.jitter,
            clock=clock,
            random=random,
        )

    def stop(self, timeout: Optional[float] = 5.0) -> bool:
        """Stop polling, wait up to ``timeout`` seconds, and free the probe pool.

        Returns:
            True if the thread has ended.
        """
        stopped = super().stop(timeout)
        self._shutdown_pool()
        return stopped

    close = stop

    def is_healthy(self, service: str, url: str) -> bool:
        """Return the verdict for ``(service, url)``; unchecked instances are healthy."""
        return (service, url) not in self._unhealthy

    def unhealthy(self) -> frozenset[Key]:
        """Return the ``(service, url)`` pairs currently judged unhealthy."""
        return self._unhealthy

    def checked_at(self, service: str, url: str) -> Optional[float]:
        """Return the clock time of the last probe of ``(service, url)``, if any."""
        verdict = self._verdicts.get((service, url))
        return verdict.checked_at if verdict is not None else None

    def last_probe(self, service: str, url: str) -> Optional[ProbeResult]:
        """Return what the last probe of ``(service, url)`` found, if it was probed."""
        verdict = self._verdicts.get((service, url))
        return verdict.last if verdict is not None else None

    def poll_once(self) -> dict[Key, bool]:
        """Probe every target once, update verdicts and return them.

        Returns:
            ``{(service, url): healthy}`` for every target of this sweep.
        """
        with self._sweep_lock:
            started = self._clock()
            targets = {inst.key: inst for inst in self._targets()}
            items = list(targets.values())
            try:
                results = list(self._pool().map(self._probe, items)) if items else []
            except (CancelledError, RuntimeError):
                # stop() shut the pool down mid-sweep; keep the old verdicts.
                return {key: v.healthy for key, v in self._verdicts.items()}
            now = self._clock()
            verdicts = {key: self._verdicts.get(key) or _Verdict() for key in targets}
            for inst, result in zip(items, results):
                self._judge(inst, verdicts[inst.key], result, now)
            self._verdicts = verdicts
            unhealthy = frozenset(key for key, v in verdicts.items() if not v.healthy)
            changed = unhealthy != self._unhealthy
            self._unhealthy = unhealthy
            self.last_sweep_seconds = now - started
        if changed and self._on_change is not None:
            self._on_change(unhealthy)
        return {key: v.healthy for key, v in verdicts.items()}

    def _judge(self, inst: Instance, verdict: _Verdict, result: ProbeResult, now: float) -> None:
        verdict.checked_at = now
        verdict.last = result
        telemetry = self._telemetry if self._telemetry is not None else quiet_instruments()
        telemetry.health_probe(inst.service, result.passed)
        fields = {"mscomm.target": inst.service, "mscomm.instance": inst.url}
        if result.passed:
            verdict.failures = 0
            verdict.passes += 1
            if not verdict.healthy and verdict.passes >= self.config.rise:
                verdict.healthy = True
                telemetry.health_verdict(inst.service, True)
                log.info(
                    "instance %s of %r is healthy again", inst.url, inst.service,
                    extra={"mscomm.event": "healthy", **fields},
                )  # fmt: skip
        else:
            verdict.passes = 0
            verdict.failures += 1
            if verdict.healthy and verdict.failures >= self.config.fall:
                verdict.healthy = False
                telemetry.health_verdict(inst.service, False)
                log.warning(
                    "instance %s of %r is unhealthy after %d failed checks (last: %s)",
                    inst.url,
                    inst.service,
                    verdict.failures,
                    result.reason,
                    extra={"mscomm.event": "unhealthy", "mscomm.reason": result.reason,
                           "mscomm.failures": verdict.failures, **fields},
                )  # fmt: skip

    def _probe(self, inst: Instance) -> ProbeResult:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            self._local.session = session
            self._sessions.append(session)
        timeout = self.config.timeout
        started = self._clock()
        try:
            # The body is read (health answers are small) so the connection
            # goes back to the pool for the next sweep.
            response = session.get(inst.health_url, timeout=(timeout, timeout))
        except requests.RequestException as exc:
            reason = describe_failure(exc, timeout)
            log.debug(
                "health probe of %s failed: %s", inst.health_url, reason,
                extra={"mscomm.event": "probe failed", "mscomm.target": inst.service,
                       "mscomm.instance": inst.url, "mscomm.reason": reason},
            )  # fmt: skip
            return ProbeResult(passed=False, reason=reason, seconds=self._clock() - started)
        status = response.status_code
        return ProbeResult(
            passed=200 <= status < 300,
            reason=f"HTTP {status}",
            status=status,
            seconds=self._clock() - started,
        )

    def _reset_after_fork(self) -> None:
        # In a forked child: the parent's pool threads and pooled sockets are
        # not ours, and a sweep in progress at the fork left its lock held.
        super()._reset_after_fork()
        self._sweep_lock = threading.Lock()
        self._executor = None
        self._sessions = []
        self._local = threading.local()
        self._pid = os.getpid()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.config.max_workers, thread_name_prefix="mscomm-health-probe"
            )
        return self._executor

    def _shutdown_pool(self) -> None:
        # No sweep lock here: stop() must not wait for a sweep's probes.
        executor, self._executor = self._executor, None
        sessions, self._sessions = self._sessions, []
        self._local = threading.local()
        if executor is not None and self._pid == os.getpid():
            executor.shutdown(wait=False, cancel_futures=True)
        for session in sessions:
            session.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<HealthPoller interval={self.config.interval:g} "
            f"unhealthy={len(self._unhealthy)} {state}>"
        )
