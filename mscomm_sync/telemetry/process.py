"""The process's default telemetry: what everything built without ``telemetry=`` reports.

Clients and middlewares given no ``telemetry=``, health pollers, replay
stores and registries all report through this default. It is read from the
environment (``$MSCOMM_TELEMETRY``, ``$MSCOMM_ACCESS_LOG``) the first time it
is needed, or set explicitly with :func:`initialize_telemetry` (which wins
from then on, for objects built before it too). It lives behind a lock and
tests reset it with :func:`reset_telemetry`.
"""

from __future__ import annotations

import threading
from typing import Optional

from ..errors import ConfigurationError
from .instruments import Instruments
from .options import Telemetry, TelemetryOption, resolve

__all__ = [
    "count_registry_error",
    "count_replay_error",
    "initialize_telemetry",
    "process_instruments",
    "quiet_instruments",
    "reset_telemetry",
]

_lock = threading.Lock()
_default: Optional[Instruments] = None


def initialize_telemetry(telemetry: TelemetryOption = None) -> Telemetry:
    """Set the process's default telemetry; return it.

    Args:
        telemetry: the settings, ``True`` (OpenTelemetry on), ``False``
            (nothing reported) or ``None`` (read the environment again).

    Raises:
        ConfigurationError: invalid settings, or OpenTelemetry asked for
            and not installed.
    """
    global _default
    settings = resolve(telemetry)
    built = Instruments(settings if settings is not None else Telemetry.from_env())
    with _lock:
        _default = built
    return built.config


def reset_telemetry() -> None:
    """Forget the process's default; the next use reads the environment again."""
    global _default
    with _lock:
        _default = None


def process_instruments() -> Instruments:
    """Return the process's default telemetry, built from the environment on first use.

    Raises:
        ConfigurationError: the environment's settings are invalid.
    """
    global _default
    found = _default
    if found is None:
        with _lock:
            if _default is None:
                _default = Instruments(Telemetry.from_env())
            found = _default
    return found


def quiet_instruments() -> Instruments:
    """Return the process's default, or nothing-reporting instruments if the environment's
    settings are invalid (for code that must not fail for it: stores, registries, pollers).

    A bad ``$MSCOMM_TELEMETRY`` is reported where clients and middlewares are built.
    """
    try:
        return process_instruments()
    except ConfigurationError:
        return _OFF


def count_replay_error(store: str, reason: str) -> None:
    """Count one replay-store failure (never raises)."""
    quiet_instruments().replay_error(store, reason)


def count_registry_error(registry: str, reason: str) -> None:
    """Count one registry read that failed while the last good data was kept (never raises)."""
    quiet_instruments().registry_error(registry, reason)


_OFF = Instruments(Telemetry.off())
