"""Fixtures for the reliability tests: keys, a registry, sealed services, clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import pytest
from support.fleet import Fleet

from mscomm_sync import MicroServiceClient
from mscomm_sync.keyring import Keyring
from mscomm_sync.registry import FileRegistry

from .services import Counting, WaitressServer, sealed


@pytest.fixture(scope="package")
def fleet() -> Fleet:
    """v2 key pairs of orders (the caller) and billing (the service)."""
    return Fleet("orders", "billing")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FileRegistry]:
    reg = FileRegistry(tmp_path / "registry.json")
    yield reg
    reg.close()


@pytest.fixture
def serve(fleet: Fleet) -> Iterator[Callable[[str], tuple[Counting, str]]]:
    """Start a sealed billing instance named ``name``; return its app and URL (not registered)."""
    with ExitStack() as stack:

        def start(name: str) -> tuple[Counting, str]:
            app = Counting(name)
            server = stack.enter_context(WaitressServer(sealed(app, fleet)))
            return app, server.url

        yield start


@pytest.fixture
def make_client(
    fleet: Fleet, registry: FileRegistry
) -> Iterator[Callable[..., MicroServiceClient]]:
    """Build orders' clients of billing on the test's registry; closed afterwards."""
    clients: list[MicroServiceClient] = []

    def build(**options: Any) -> MicroServiceClient:
        client = MicroServiceClient(
            "orders",
            registry=registry,
            identity=fleet.identity("orders"),
            trust=fleet.trust("billing"),
            keyring=Keyring.from_mapping({}),
            **options,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
