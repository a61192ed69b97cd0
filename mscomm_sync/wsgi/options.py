"""The validated, frozen settings of :class:`~mscomm_sync.wsgi.EncryptionMiddleware`.

Every option is checked once, here, when the middleware is built; a bad one
raises :class:`~mscomm_sync.errors.ConfigurationError` naming the option.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional

import attrs

from ..envelope import DEFAULT_MAX_BODY_SIZE, DEFAULT_WINDOW, ENVELOPE_HEADERS
from ..errors import ConfigurationError
from ..keyring import validate_service_name

__all__ = [
    "CALLERS_ENV",
    "DEFAULT_EXEMPT_PATHS",
    "MIDDLEWARE_OPTIONS",
    "MiddlewareOptions",
    "callers_from_env",
    "own_versions",
    "reject_unknown_options",
    "resolve_service_name",
]

DEFAULT_EXEMPT_PATHS = frozenset({"/health"})
#: The variable that names the services allowed to call this one (comma-separated).
CALLERS_ENV = "MSCOMM_CALLERS"
_INF = float("inf")


def resolve_service_name(service_name: Optional[str], environ: Mapping[str, str]) -> str:
    """Return ``service_name``, or ``SERVICE_NAME`` from ``environ`` when it is ``None``.

    Raises:
        ConfigurationError: neither is set, or the name is invalid.
    """
    if service_name is None:
        service_name = environ.get("SERVICE_NAME")
        if not service_name:
            raise ConfigurationError(
                "EncryptionMiddleware needs a service name: pass service_name=... "
                "or set SERVICE_NAME",
                variable="SERVICE_NAME",
                reason="missing",
            )
    return validate_service_name(service_name)


def _exempt_paths(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            "exempt_paths must be a collection of paths, not one string",
            variable="exempt_paths",
            reason="not a collection",
        )
    paths = tuple(value)
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(
                "every exempt path must be a string starting with '/'",
                variable="exempt_paths",
                reason="invalid path",
            )
    return frozenset(paths)


def _allowed_callers(value: Optional[Iterable[str]]) -> Optional[frozenset[str]]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            "allowed_callers must be a collection of service names, not one string",
            variable="allowed_callers",
            reason="not a collection",
        )
    return frozenset(validate_service_name(v, what="allowed caller") for v in value)


def _versions(value: Iterable[object]) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            'versions must be a collection such as ("1", "2")',
            variable="versions",
            reason="invalid",
        )
    found = frozenset(str(v) for v in value)
    if not found or not found <= {"1", "2"}:
        raise ConfigurationError(
            'versions must be some of "1" and "2"', variable="versions", reason="invalid"
        )
    return found


def _header_names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            "outer_headers must be a collection of header names",
            variable="outer_headers",
            reason="not a collection",
        )
    names = frozenset(str(v).lower() for v in value)
    if any(not n or not n.replace("-", "").isalnum() or not n.isascii() for n in names):
        raise ConfigurationError(
            "outer_headers must be header names such as X-Forwarded-For",
            variable="outer_headers",
            reason="invalid name",
        )
    protocol = sorted(n for n in names if n.startswith("x-mscomm-") or n in _ENVELOPE_NAMES)
    if protocol:
        # The envelope's own headers are believed only from the seal; letting an
        # outer one through would hand the app what anyone on the path wrote.
        raise ConfigurationError(
            f"outer_headers cannot pass the protocol's own headers ({', '.join(protocol)})",
            variable="outer_headers",
            reason="protocol header",
        )
    return names


_ENVELOPE_NAMES = frozenset(h.lower() for h in ENVELOPE_HEADERS)


def _non_negative_int(_inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"{attr.name} must be a non-negative integer",
            variable=attr.name,
            reason="invalid number",
        )


def _positive_number(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < _INF:
        raise ConfigurationError(
            f"{attr.name} must be a finite, positive number of seconds",
            variable=attr.name,
            reason="invalid number",
        )


def _mount_point(_inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    if value == "":
        return
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.endswith("/")
        or any(c in value for c in "?#")
        or not value.isprintable()
    ):
        raise ConfigurationError(
            f"{attr.name} must be empty or a path such as /billing (no trailing '/')",
            variable=attr.name,
            reason="invalid path",
        )


def _flag(_inst: Any, attr: attrs.Attribute[Any], value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{attr.name} must be True or False", variable=attr.name, reason="not a bool"
        )


@attrs.frozen(kw_only=True)
class MiddlewareOptions:
    """What the middleware does, checked once at construction.

    Attributes:
        service_name: this service's name; sealed requests must be addressed to it.
        encrypt_responses: seal the answers to sealed requests. ``False`` is a
            weakening kept for compatibility (see ``docs/middleware.md``).
        require_encryption: refuse plaintext requests to paths that are not exempt.
        exempt_paths: paths (``PATH_INFO``, below the mount point, exact
            match) that plaintext requests may reach.
        allowed_callers: the verified senders that may reach the app. When
            ``None``, the trust file's ``callers`` for this service, else
            ``$MSCOMM_CALLERS``; with none of them, no caller may.
        max_body_size: the largest body, in bytes, of any request: the
            plaintext a sealed request carries (its sealed body may be 16 bytes
            longer), or a plaintext request's body as sent.
        replay_window: how far, in seconds, a request's timestamp may be from now.
        script_name: where the app is mounted: the one ``SCRIPT_NAME`` every
            request must arrive with (``""`` for the root, else a path such
            as ``/billing``). Any other is refused before anything else, so
            that a server or proxy that rewrites ``SCRIPT_NAME`` (gunicorn
            takes it from a request header) cannot make the app route
            another path than the one verified.
        versions: the protocol versions accepted (``{"1", "2"}``).
        outer_headers: headers (protocol v2) that may reach the app from
            outside the seal, unauthenticated, such as ``X-Forwarded-For``
            from the deployment's own proxies; every other header the app
            sees came sealed.
    """

    service_name: str = attrs.field(converter=validate_service_name)
    encrypt_responses: bool = attrs.field(default=True, validator=_flag)
    require_encryption: bool = attrs.field(default=True, validator=_flag)
    exempt_paths: frozenset[str] = attrs.field(
        default=DEFAULT_EXEMPT_PATHS, converter=_exempt_paths
    )
    allowed_callers: Optional[frozenset[str]] = attrs.field(
        default=None, converter=_allowed_callers
    )
    max_body_size: int = attrs.field(default=DEFAULT_MAX_BODY_SIZE, validator=_non_negative_int)
    replay_window: float = attrs.field(default=DEFAULT_WINDOW, validator=_positive_number)
    script_name: str = attrs.field(default="", validator=_mount_point)
    versions: frozenset[str] = attrs.field(default=frozenset({"1", "2"}), converter=_versions)
    outer_headers: frozenset[str] = attrs.field(default=frozenset(), converter=_header_names)

    @classmethod
    def build(cls, service_name: Optional[str], **options: Any) -> MiddlewareOptions:
        """Build options, reading ``SERVICE_NAME`` when ``service_name`` is ``None``.

        Raises:
            ConfigurationError: an option is missing or invalid.
        """
        return cls(service_name=resolve_service_name(service_name, os.environ), **options)


#: Every keyword option of ``EncryptionMiddleware``, ``service_name`` first:
#: the fields of :class:`MiddlewareOptions`, then its collaborators.
MIDDLEWARE_OPTIONS: tuple[str, ...] = (
    *(field.name for field in attrs.fields(MiddlewareOptions)),
    "keyring",
    "identity",
    "trust",
    "replay_store",
    "idempotency",
    "clock",
    "telemetry",
)


def reject_unknown_options(names: Iterable[str]) -> None:
    """Refuse option names that ``EncryptionMiddleware`` does not take.

    Raises:
        ConfigurationError: some name is not in :data:`MIDDLEWARE_OPTIONS`.
    """
    unknown = sorted(set(names).difference(MIDDLEWARE_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown mscomm_sync option(s): {', '.join(unknown)}", reason="unknown option"
        )


def callers_from_env(environ: Mapping[str, str]) -> frozenset[str]:
    """Return the callers ``$MSCOMM_CALLERS`` names (none when it is unset).

    Raises:
        ConfigurationError: a name in it is not a valid service name.
    """
    value = environ.get(CALLERS_ENV, "")
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        try:
            validate_service_name(name, what="caller")
        except ConfigurationError as exc:
            raise ConfigurationError(str(exc), variable=CALLERS_ENV, reason=exc.reason) from None
    return frozenset(names)


def own_versions(
    service: str, versions: frozenset[str], keyring: Any, identity: Any
) -> frozenset[str]:
    """Return the versions ``service`` can answer in: those it has its own key for.

    v2 needs its private key (``<NAME>_PRIVATE_KEY``), v1 its shared key
    (``<NAME>_ENCRYPTION_KEY``). A key that is there but malformed is an
    error now, at start-up.

    Raises:
        ConfigurationError: a key is malformed, or it has no key for any of
            ``versions`` (the message names the variables to set).
    """
    speaks = set()
    if "2" in versions and identity.available():
        identity.keys()  # raises, naming the variable, when malformed
        speaks.add("2")
    if "1" in versions:
        try:
            keyring.keys_for(service)
        except ConfigurationError as exc:
            if exc.reason != "missing":
                raise
        else:
            speaks.add("1")
    if not speaks:
        raise ConfigurationError(
            f"service {service!r} has no key of its own: set {identity.variable} (protocol v2; "
            f"make one with `mscomm keygen`) or {keyring_variable(service)} (protocol v1)",
            variable=identity.variable,
            reason="missing",
        )
    return frozenset(speaks)


def keyring_variable(service: str) -> str:
    """The variable of ``service``'s v1 key."""
    from ..keyring import env_var_name

    return env_var_name(service)
