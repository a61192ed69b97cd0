"""The process default registry: initialize, get, reset, and self-registration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mscomm_sync.errors import ConfigurationError, RegistryError
from mscomm_sync.registry import (
    FileRegistry,
    get_registry,
    initialize_registry,
    register_from_env,
    reset_registry,
)


def test_get_registry_before_initialize_raises_a_clear_error() -> None:
    """Asking for the default before initialize_registry names the function to call."""
    with pytest.raises(ConfigurationError, match="initialize_registry"):
        get_registry()


def test_initialize_registry_makes_the_process_default(registry_path: Path) -> None:
    """initialize_registry returns the registry that get_registry then returns."""
    registry = initialize_registry(registry_path)
    assert get_registry() is registry
    assert isinstance(registry, FileRegistry)


def test_initialize_registry_without_arguments_uses_the_environment(tmp_path: Path) -> None:
    """With no location, MSCOMM_REGISTRY names the file (and opening it creates nothing)."""
    registry = initialize_registry()
    assert isinstance(registry, FileRegistry)
    assert registry.location == str(tmp_path / "default-registry.json")
    assert not os.path.exists(registry.location)


@pytest.fixture
def no_registry_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Unset MSCOMM_REGISTRY; the per-user default then lives under tmp_path/state."""
    monkeypatch.delenv("MSCOMM_REGISTRY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "mscomm" / "registry.json"


def test_reading_the_default_registry_creates_nothing(
    no_registry_variable: Path, tmp_path: Path
) -> None:
    """Without MSCOMM_REGISTRY, a lookup in the default registry creates no file or directory."""
    registry = initialize_registry()
    assert registry.get_instances("billing") == []
    assert registry.location == str(no_registry_variable)
    assert not (tmp_path / "state").exists()


def test_registering_in_the_default_registry_creates_its_directory(
    no_registry_variable: Path,
) -> None:
    """The per-user default's directory, which nobody typed, is created by the first write."""
    initialize_registry().register("billing", "http://127.0.0.1:8001")
    assert no_registry_variable.is_file()


def test_an_explicit_location_in_a_missing_directory_is_not_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A MSCOMM_REGISTRY path whose directory is missing is refused on write, as a likely typo."""
    monkeypatch.setenv("MSCOMM_REGISTRY", str(tmp_path / "typo" / "registry.json"))
    with pytest.raises(RegistryError, match="does not exist"):
        initialize_registry().register("billing", "http://127.0.0.1:8001")
    assert not (tmp_path / "typo").exists()


def test_initialize_again_closes_the_previous_default(tmp_path: Path) -> None:
    """A second initialize_registry replaces the default and stops the old one's threads."""
    first = initialize_registry(tmp_path / "a.json", health_check_interval=60)
    assert first.health_poller is not None and first.health_poller.running
    second = initialize_registry(tmp_path / "b.json")
    assert get_registry() is second
    assert not first.health_poller.running


def test_reset_registry_forgets_and_closes_the_default(registry_path: Path) -> None:
    """After reset_registry there is no default and its health thread has stopped."""
    registry = initialize_registry(registry_path, health_check_interval=60)
    reset_registry()
    assert registry.health_poller is not None and not registry.health_poller.running
    with pytest.raises(ConfigurationError):
        get_registry()


def test_lease_ttl_is_ignored_by_the_file_backend(registry_path: Path) -> None:
    """One initialize_registry call with lease_ttl works whatever the location."""
    assert isinstance(initialize_registry(registry_path, lease_ttl=5), FileRegistry)


def test_unknown_scheme_is_a_configuration_error() -> None:
    """A location with an unsupported scheme is refused."""
    with pytest.raises(ConfigurationError, match="unsupported"):
        initialize_registry("zookeeper://127.0.0.1:2181")


def test_register_from_env_registers_into_the_default(registry_path: Path) -> None:
    """SERVICE_NAME and SERVICE_URL register this service in the default registry."""
    initialize_registry(registry_path)
    env = {"SERVICE_NAME": "billing", "SERVICE_URL": "http://127.0.0.1:8001"}
    instance = register_from_env(environ=env)
    assert get_registry().get_instances("billing") == [instance]


def test_register_from_env_honours_the_health_endpoint_variable(
    file_registry: FileRegistry,
) -> None:
    """SERVICE_HEALTH_ENDPOINT overrides the default health path."""
    env = {
        "SERVICE_NAME": "billing",
        "SERVICE_URL": "http://127.0.0.1:8001",
        "SERVICE_HEALTH_ENDPOINT": "/ready",
    }
    assert register_from_env(file_registry, environ=env).health_endpoint == "/ready"


def test_register_from_env_names_the_missing_variable(file_registry: FileRegistry) -> None:
    """A missing SERVICE_URL raises ConfigurationError naming that variable."""
    with pytest.raises(ConfigurationError) as info:
        register_from_env(file_registry, environ={"SERVICE_NAME": "billing"})
    assert info.value.variable == "SERVICE_URL"


def test_importing_the_package_starts_no_thread() -> None:
    """Importing mscomm_sync.registry in a fresh interpreter leaves one thread running."""
    import subprocess
    import sys

    code = "import threading, mscomm_sync, mscomm_sync.registry; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
