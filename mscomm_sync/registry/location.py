"""Where registries live: the default location and ``etcd://`` locations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional
from urllib.parse import urlsplit

from ..errors import ConfigurationError

__all__ = ["DEFAULT_PREFIX", "ENV_REGISTRY", "default_location", "parse_location"]

#: The environment variable that names the default registry location.
ENV_REGISTRY = "MSCOMM_REGISTRY"
#: The etcd key prefix when a location names none.
DEFAULT_PREFIX = "/mscomm"


def default_location(environ: Optional[Mapping[str, str]] = None) -> str:
    """Return where the default registry lives.

    ``$MSCOMM_REGISTRY`` if set and not empty; otherwise
    ``$XDG_STATE_HOME/mscomm/registry.json``, where ``XDG_STATE_HOME`` defaults
    to ``~/.local/state``. A per-user path, so that the services of one user on
    one host find each other and other users cannot rewrite their addresses.

    Args:
        environ: the environment to read (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    location = env.get(ENV_REGISTRY, "").strip()
    if location:
        return location
    state = env.get("XDG_STATE_HOME", "").strip()
    if not state:
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "mscomm", "registry.json")


def parse_location(location: str) -> tuple[list[str], str]:
    """Split ``etcd://host:port[,host:port...][/prefix]`` into endpoints and prefix.

    Returns:
        ``(["http://host:port", ...], "/prefix")``; the prefix defaults to
        :data:`DEFAULT_PREFIX`.

    Raises:
        ConfigurationError: the location is malformed.
    """
    if not location.startswith("etcd://"):
        raise ConfigurationError(f"not an etcd location: {location!r}", reason="bad location")
    hosts, _, path = location[len("etcd://") :].partition("/")
    if "@" in hosts:
        # Credentials would end up in log lines and reprs; never echo them.
        raise ConfigurationError(
            "etcd locations must not carry credentials (user:password@)",
            variable=ENV_REGISTRY,
            reason="credentials in location",
        )
    endpoints = []
    for host in hosts.split(","):
        host = host.strip()
        try:
            parts = urlsplit(f"http://{host}")
            valid = (
                bool(parts.hostname)
                and parts.port is not None
                and parts.port > 0
                and parts.path == ""
                and not parts.query
                and not parts.fragment
                and "?" not in host
                and "#" not in host
            )
        except ValueError:
            valid = False
        if not valid:
            raise ConfigurationError(
                f"invalid etcd location {location!r}: use etcd://host:port[,host:port...][/prefix]",
                reason="bad location",
            )
        endpoints.append(f"http://{host}")
    path = path.strip("/")
    return endpoints, f"/{path}" if path else DEFAULT_PREFIX
