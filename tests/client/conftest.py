"""Fixtures for the client tests: a real file registry, live services, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.registry import FileRegistry
from mscomm_sync.testing import LiveServer

from .servers import FakeClock, keyring


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FileRegistry]:
    """A real FileRegistry in a temporary directory."""
    reg = FileRegistry(tmp_path / "registry.json")
    yield reg
    reg.close()


@pytest.fixture
def clock() -> FakeClock:
    """A clock and sleep that move only when told to."""
    return FakeClock()


@pytest.fixture
def serve(registry: FileRegistry) -> Iterator[Callable[..., LiveServer]]:
    """Start a WSGI app on 127.0.0.1 and register it under a service name."""
    servers: list[LiveServer] = []

    def start(app: Any, service: str = "billing") -> LiveServer:
        server = LiveServer(app).start()
        servers.append(server)
        registry.register(service, server.url)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_client(
    registry: FileRegistry, clock: FakeClock
) -> Iterator[Callable[..., MicroServiceClient]]:
    """Build clients for the service "orders" on the registry and fake clock."""
    clients: list[MicroServiceClient] = []

    def build(**options: Any) -> MicroServiceClient:
        options.setdefault("registry", registry)
        options.setdefault("keyring", keyring())
        options.setdefault("clock", clock)
        options.setdefault("sleep", clock.sleep)
        client = MicroServiceClient("orders", **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
