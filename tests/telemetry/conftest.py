"""Fixtures for the telemetry tests: the real OpenTelemetry SDK with in-memory exporters,
and v2 services served by real waitress servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from mscomm_sync import reset_telemetry

from .services import Sdk, Services


@pytest.fixture(autouse=True)
def _fresh_process_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends without a process default, and with the variables unset."""
    monkeypatch.delenv("MSCOMM_TELEMETRY", raising=False)
    monkeypatch.delenv("MSCOMM_ACCESS_LOG", raising=False)
    reset_telemetry()
    yield
    reset_telemetry()


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """A TracerProvider and a MeterProvider of the real SDK, read in memory."""
    found = Sdk()
    yield found
    found.shutdown()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Services]]:
    """Build a set of v2 services on waitress (stopped at the end)."""
    built: list[Services] = []

    def build(*names: str, **options: Any) -> Services:
        found = Services(tmp_path / f"registry{len(built)}.json", names, **options)
        built.append(found)
        return found

    yield build
    for found in built:
        found.close()
