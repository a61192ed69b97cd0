"""``mscomm registry list|register|deregister|health``: inspect and edit a registry.

Every subcommand takes ``--registry LOCATION`` (a file path or
``etcd://host:port[,host:port...][/prefix]``, defaulting like
:func:`~mscomm_sync.registry.initialize_registry`) and ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

from ..errors import ConfigurationError
from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance
from .default import open_registry
from .health import HealthCheckConfig
from .location import ENV_REGISTRY, default_location

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Add the ``registry`` subcommand and its own subcommands to ``subparsers``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        metavar="LOCATION",
        default=None,
        help=(
            "a JSON file path or etcd://host:port[,host:port...][/prefix] "
            f"(default: ${ENV_REGISTRY}, else ~/.local/state/mscomm/registry.json)"
        ),
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    registry = subparsers.add_parser(
        "registry",
        help="list, register, deregister and health-check service instances",
        description="Inspect and edit a service registry (a JSON file or etcd).",
    )
    sub = registry.add_subparsers(dest="registry_command", metavar="ACTION")
    sub.required = True

    listing = sub.add_parser(
        "list", parents=[common], help="list registered instances", description="List instances."
    )
    listing.add_argument("service", nargs="?", help="only this service")
    listing.set_defaults(func=_list)

    register = sub.add_parser(
        "register",
        parents=[common],
        help="add or update an instance",
        description=(
            "Add or update an instance. In etcd the entry has no lease: it stays "
            "until `mscomm registry deregister` removes it."
        ),
    )
    register.add_argument("service")
    register.add_argument("url")
    register.add_argument("--health-endpoint", default=DEFAULT_HEALTH_ENDPOINT, metavar="PATH")
    register.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="string metadata; repeat for several keys",
    )
    register.set_defaults(func=_register)

    deregister = sub.add_parser(
        "deregister", parents=[common], help="remove an instance", description="Remove an instance."
    )
    deregister.add_argument("service")
    deregister.add_argument("url")
    deregister.set_defaults(func=_deregister)

    health = sub.add_parser(
        "health",
        parents=[common],
        help="probe every instance's health endpoint once",
        description=(
            "GET every instance's health endpoint once and report it. "
            "Exit status 1 if any instance is unhealthy."
        ),
    )
    health.add_argument("service", nargs="?", help="only this service")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds per probe (default: 2)")
    health.set_defaults(func=_health)


@contextmanager
def _opened(args: argparse.Namespace) -> Iterator[BaseRegistry]:
    location = args.registry if args.registry is not None else default_location()
    registry = open_registry(location)
    try:
        yield registry
    finally:
        registry.close()


def _selected(registry: BaseRegistry, service: Optional[str]) -> list[Instance]:
    if service is not None:
        return registry.get_instances(service)
    return registry.instances()


def _as_dict(inst: Instance, *, health: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "service": inst.service,
        "url": inst.url,
        "health_endpoint": inst.health_endpoint,
        "metadata": dict(inst.metadata),
    }
    if health:
        row["healthy"] = inst.healthy
    return row


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


def _metadata_text(inst: Instance) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(inst.metadata.items())) or "-"


def _list(args: argparse.Namespace) -> int:
    with _opened(args) as registry:
        instances = _selected(registry, args.service)
    if args.json:
        print(json.dumps([_as_dict(i) for i in instances], indent=2))
    elif not instances:
        print("no instances registered")
    else:
        rows = [[i.service, i.url, i.health_endpoint, _metadata_text(i)] for i in instances]
        print(_table(["SERVICE", "URL", "ENDPOINT", "METADATA"], rows))
    return 0


def _parse_metadata(pairs: Sequence[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(
                f"invalid --metadata {pair!r}: use KEY=VALUE", reason="invalid metadata"
            )
        metadata[key] = value
    return metadata


def _register(args: argparse.Namespace) -> int:
    metadata = _parse_metadata(args.metadata)
    with _opened(args) as registry:
        options: dict[str, Any] = {}
        if registry.location.startswith("etcd://"):
            options["lease"] = False  # this process exits at once: no lease to keep
        inst = registry.register(
            args.service,
            args.url,
            health_endpoint=args.health_endpoint,
            metadata=metadata,
            **options,
        )
    if args.json:
        print(json.dumps(_as_dict(inst), indent=2))
    else:
        print(f"registered {inst.service} at {inst.url} in {registry.location}")
    return 0


def _deregister(args: argparse.Namespace) -> int:
    with _opened(args) as registry:
        registry.deregister(args.service, args.url)
    if args.json:
        print(json.dumps({"service": args.service, "url": args.url, "deregistered": True}))
    else:
        print(f"deregistered {args.service} at {args.url} from {registry.location}")
    return 0


def _health(args: argparse.Namespace) -> int:
    config = HealthCheckConfig(timeout=args.timeout, rise=1, fall=1)
    with _opened(args) as registry:
        targets = _selected(registry, args.service)
        poller = registry.make_health_poller(config)
        # The table reports each verdict; the poller's log lines would repeat it.
        logger = logging.getLogger("mscomm_sync.registry")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            if targets:
                poller.poll_once()
        finally:
            logger.setLevel(level)
            poller.stop()
        checked = _selected(registry, args.service)
    if args.json:
        print(json.dumps([_as_dict(i, health=True) for i in checked], indent=2))
    elif not checked:
        print("no instances registered")
    else:
        rows = [
            [i.service, i.url, i.health_endpoint, "healthy" if i.healthy else "UNHEALTHY"]
            for i in checked
        ]
        print(_table(["SERVICE", "URL", "ENDPOINT", "STATE"], rows))
    return 0 if all(i.healthy for i in checked) else 1
