"""``mscomm registry list|register|deregister|health``: inspect and edit a registry.

``--registry LOCATION`` (a file path or ``etcd://host:port[,host:port...][/prefix]``,
defaulting like :func:`~mscomm_sync.registry.initialize_registry`) and ``--json``
are accepted before the subcommand (``mscomm --registry X registry list``) or
after it. Reads never create a registry: a missing registry file is an error.

Exit status: 0 on success; 1 when the registry was read and the answer is no
(nothing registered under the service asked for, nothing to deregister, an
instance unhealthy); 2 for usage errors and failures (a missing, corrupt or
unreachable registry, a lock that stayed held).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

from ..errors import ConfigurationError, RegistryError
from .backend import BaseRegistry
from .base import DEFAULT_HEALTH_ENDPOINT, Instance
from .default import open_registry
from .health import HealthCheckConfig
from .location import ENV_REGISTRY, default_location
from .probe import ProbeResult
from .table import format_table

__all__ = ["EXIT_ERROR", "EXIT_NO", "EXIT_OK", "add_location_options", "add_parser"]

#: The command did what was asked.
EXIT_OK = 0
#: The registry was read and the answer is no: not found, nothing removed, unhealthy.
EXIT_NO = 1
#: A usage error (as argparse reports them) or a failure.
EXIT_ERROR = 2


def add_location_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Add ``--registry`` and ``--json`` to ``parser``.

    The top-level parser sets the defaults; a subcommand's parser leaves a
    value given before the subcommand alone unless the option is repeated.
    """
    registry_default: Any = None if top_level else argparse.SUPPRESS
    json_default: Any = False if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--registry",
        metavar="LOCATION",
        default=registry_default,
        help=(
            "a JSON file path or etcd://host:port[,host:port...][/prefix] "
            f"(default: ${ENV_REGISTRY}, else ~/.local/state/mscomm/registry.json)"
        ),
    )
    parser.add_argument(
        "--json", action="store_true", default=json_default, help="print JSON instead of text"
    )


def add_parser(subparsers: Any) -> None:
    """Add the ``registry`` subcommand and its own subcommands to ``subparsers``."""
    common = argparse.ArgumentParser(add_help=False)
    add_location_options(common, top_level=False)

    registry = subparsers.add_parser(
        "registry",
        parents=[common],
        help="list, register, deregister and health-check service instances",
        description=(
            "Inspect and edit a service registry (a JSON file or etcd). Exit status: 0 "
            "success, 1 not found / nothing removed / unhealthy, 2 usage error or failure."
        ),
    )
    sub = registry.add_subparsers(dest="registry_command", metavar="ACTION")
    sub.required = True

    listing = sub.add_parser(
        "list", parents=[common], help="list registered instances", description="List instances."
    )
    listing.add_argument("service", nargs="?", help="only this service (exit 1 if it has none)")
    listing.set_defaults(func=_list)

    register = sub.add_parser(
        "register",
        parents=[common],
        help="add or update an instance",
        description=(
            "Add or update an instance. A missing registry file is created, in a directory "
            "that must exist unless --create-parents is given. In etcd the entry has no "
            "lease: it stays until `mscomm registry deregister` removes it."
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
    register.add_argument(
        "--create-parents",
        action="store_true",
        help="create the registry file's missing directories (file registries only)",
    )
    register.set_defaults(func=_register)

    deregister = sub.add_parser(
        "deregister",
        parents=[common],
        help="remove an instance",
        description="Remove an instance. Exit status 1 if nothing was registered there.",
    )
    deregister.add_argument("service")
    deregister.add_argument("url")
    deregister.set_defaults(func=_deregister)

    health = sub.add_parser(
        "health",
        parents=[common],
        help="probe every instance's health endpoint once",
        description=(
            "GET every instance's health endpoint once and report each verdict, why, and "
            "how long the probe took. Exit status 1 if any instance is unhealthy."
        ),
    )
    health.add_argument("service", nargs="?", help="only this service (exit 1 if it has none)")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds per probe (default: 2)")
    health.set_defaults(func=_health)


@contextmanager
def _opened(args: argparse.Namespace, *, must_exist: bool = True) -> Iterator[BaseRegistry]:
    options: dict[str, Any] = {}
    if getattr(args, "create_parents", False) and not _is_etcd(args.registry):
        options["create_parents"] = True
    registry = open_registry(args.registry, **options)
    try:
        if must_exist and not registry.exists:
            raise RegistryError(
                f"registry file {registry.location} does not exist: nothing has registered "
                f"there yet, or {_source(args)} names the wrong path",
                location=registry.location,
                reason="missing",
            )
        yield registry
    finally:
        registry.close()


def _is_etcd(location: Optional[str]) -> bool:
    where = default_location() if location is None else location
    return where.startswith("etcd://")


def _source(args: argparse.Namespace) -> str:
    if args.registry is not None:
        return "--registry"
    if os.environ.get(ENV_REGISTRY, "").strip():
        return f"${ENV_REGISTRY}"
    return f"the default location (set ${ENV_REGISTRY} or pass --registry)"


def _complain(message: str) -> None:
    print(f"mscomm: {message}", file=sys.stderr)


def _selected(registry: BaseRegistry, service: Optional[str]) -> list[Instance]:
    if service is not None:
        return registry.get_instances(service)
    return registry.instances()


def _not_found(registry: BaseRegistry, service: str) -> None:
    known = registry.services()
    listed = f"registered services: {', '.join(known)}" if known else "the registry is empty"
    _complain(f"no instances of service {service!r} in {registry.location} ({listed})")


def _as_dict(inst: Instance) -> dict[str, Any]:
    return {
        "service": inst.service,
        "url": inst.url,
        "health_endpoint": inst.health_endpoint,
        "metadata": dict(inst.metadata),
    }


def _metadata_text(inst: Instance) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(inst.metadata.items())) or "-"


def _list(args: argparse.Namespace) -> int:
    with _opened(args) as registry:
        instances = _selected(registry, args.service)
        if not instances and args.service is not None:
            _not_found(registry, args.service)
    if args.json:
        print(json.dumps([_as_dict(i) for i in instances], indent=2))
    elif instances:
        rows = [[i.service, i.url, i.health_endpoint, _metadata_text(i)] for i in instances]
        print(format_table(["SERVICE", "URL", "ENDPOINT", "METADATA"], rows))
    elif args.service is None:
        print(f"no instances registered in {registry.location}")
    return EXIT_NO if not instances and args.service is not None else EXIT_OK


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
    with _opened(args, must_exist=False) as registry:
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
    return EXIT_OK


def _deregister(args: argparse.Namespace) -> int:
    with _opened(args) as registry:
        removed = registry.deregister(args.service, args.url)
        if not removed:
            urls = [i.url for i in registry.get_instances(args.service)]
            has = f"{args.service!r} has {', '.join(urls)}" if urls else "none under that name"
            _complain(
                f"nothing registered as {args.service!r} at {args.url} in "
                f"{registry.location}; nothing removed ({has})"
            )
    if args.json:
        print(json.dumps({"service": args.service, "url": args.url, "deregistered": removed}))
    elif removed:
        print(f"deregistered {args.service} at {args.url} from {registry.location}")
    return EXIT_OK if removed else EXIT_NO


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


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
        checked = [(i, poller.last_probe(*i.key)) for i in _selected(registry, args.service)]
        if not checked and args.service is not None:
            _not_found(registry, args.service)
    if args.json:
        print(json.dumps([_health_dict(i, probe) for i, probe in checked], indent=2))
    elif checked:
        rows = [
            [
                i.service,
                i.url,
                i.health_endpoint,
                "healthy" if i.healthy else "UNHEALTHY",
                probe.reason if probe is not None else "not checked",
                _duration(probe.seconds if probe is not None else None),
            ]
            for i, probe in checked
        ]
        headers = ["SERVICE", "URL", "ENDPOINT", "STATE", "CHECK", "TIME"]
        print(format_table(headers, rows, right={5}))
    elif args.service is None:
        print(f"no instances registered in {registry.location}")
    if not checked:
        return EXIT_NO if args.service is not None else EXIT_OK
    return EXIT_OK if all(i.healthy for i, _ in checked) else EXIT_NO


def _health_dict(inst: Instance, probe: Optional[ProbeResult]) -> dict[str, Any]:
    row = _as_dict(inst)
    row["healthy"] = inst.healthy
    row["reason"] = probe.reason if probe is not None else "not checked"
    row["status"] = probe.status if probe is not None else None
    row["seconds"] = round(probe.seconds, 6) if probe is not None else None
    return row
