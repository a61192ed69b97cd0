"""The frozen, validated telemetry settings of a client, a middleware or a process.

OpenTelemetry is optional (``pip install mscomm_sync[otel]``). It is used only
when these settings ask for it, and then only its API: the application
chooses the SDK and the exporters, and sets them up (or passes its own
providers here).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any, Optional, Union

import attrs

from ..errors import ConfigurationError

__all__ = ["ACCESS_LOG_ENV", "TELEMETRY_ENV", "Telemetry", "TelemetryOption", "resolve"]

#: ``otel`` turns OpenTelemetry on for every client and middleware built without ``telemetry=``.
TELEMETRY_ENV = "MSCOMM_TELEMETRY"
#: ``1`` turns the access logs on for the same.
ACCESS_LOG_ENV = "MSCOMM_ACCESS_LOG"

_ON = frozenset({"1", "true", "yes", "on", "otel"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def _flag(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{attr.name} must be True or False", variable=attr.name, reason="not a bool"
        )


def _provider(method: str) -> Any:
    def check(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not callable(getattr(value, method, None)):
            raise ConfigurationError(
                f"{attr.name} must be an OpenTelemetry provider (with {method}()) or None",
                variable=attr.name,
                reason="not a provider",
            )

    return check


@attrs.frozen(kw_only=True)
class Telemetry:
    """What a client, a middleware or a health poller reports.

    Attributes:
        otel: trace and measure through the OpenTelemetry API (it must be
            installed: ``pip install mscomm_sync[otel]``).
        access_log: write one line per call (``mscomm_sync.access.client``)
            and per request (``mscomm_sync.access.server``), at INFO.
        tracer_provider: the ``TracerProvider`` to trace with; ``None``: the
            global one (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: the ``MeterProvider`` to measure with; ``None``: the
            global one.

    Raises:
        ConfigurationError: a field is invalid, or ``otel`` is asked for and
            OpenTelemetry is not installed.
    """

    otel: bool = attrs.field(default=True, validator=_flag)
    access_log: bool = attrs.field(default=False, validator=_flag)
    tracer_provider: Any = attrs.field(default=None, validator=_provider("get_tracer"))
    meter_provider: Any = attrs.field(default=None, validator=_provider("get_meter"))

    def __attrs_post_init__(self) -> None:
        if self.otel and importlib.util.find_spec("opentelemetry.trace") is None:
            raise ConfigurationError(
                "telemetry needs the OpenTelemetry API: pip install mscomm_sync[otel]",
                variable="telemetry",
                reason="opentelemetry-api is not installed",
            )

    @property
    def active(self) -> bool:
        """Whether anything at all is reported."""
        return self.otel or self.access_log

    @classmethod
    def off(cls) -> Telemetry:
        """Return settings that report nothing (the context still travels)."""
        return cls(otel=False)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Telemetry:
        """Return the settings ``$MSCOMM_TELEMETRY`` and ``$MSCOMM_ACCESS_LOG`` ask for.

        Raises:
            ConfigurationError: a variable has a value other than on or off
                (``otel``, ``1``, ``true``, ``on``; ``0``, ``false``, ``off``
                or empty), or OpenTelemetry is asked for and not installed.
        """
        env = os.environ if environ is None else environ
        return cls(otel=_env_flag(env, TELEMETRY_ENV), access_log=_env_flag(env, ACCESS_LOG_ENV))

    def __reduce__(self) -> tuple[Any, ...]:
        # Providers hold locks and threads: a pickled copy uses the global ones.
        return (_rebuild, (self.otel, self.access_log))

    def __repr__(self) -> str:
        return f"<Telemetry otel={self.otel} access_log={self.access_log}>"


#: What ``telemetry=`` accepts: settings, ``True`` (OpenTelemetry on),
#: ``False`` (nothing reported) or ``None`` (the process's default).
TelemetryOption = Union[None, bool, Telemetry]


def resolve(value: TelemetryOption) -> Optional[Telemetry]:
    """Return the settings ``telemetry=`` names; ``None`` means the process's default.

    Raises:
        ConfigurationError: ``value`` is none of the accepted kinds.
    """
    if value is None or isinstance(value, Telemetry):
        return value
    if value is True:
        return Telemetry()
    if value is False:
        return Telemetry.off()
    raise ConfigurationError(
        "telemetry must be a Telemetry, True, False or None",
        variable="telemetry",
        reason="invalid",
    )


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigurationError(
        f"{name} must be on (otel, 1, true) or off (0, false, empty)",
        variable=name,
        reason="invalid",
    )


def _rebuild(otel: bool, access_log: bool) -> Telemetry:
    return Telemetry(otel=otel, access_log=access_log)
