"""The ``mscomm_sync.registry`` package: the etcd backend loads only when it is used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import mscomm_sync.registry

ETCD_MODULES = ["mscomm_sync.registry.etcd", "mscomm_sync.registry.etcd_gateway"]

# Runs in a fresh interpreter, so nothing a test imported before counts.
PROBE = textwrap.dedent(
    """
    import json, sys
    exec(sys.argv[1])
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("mscomm_sync"))))
    """
)


def loaded_after(statement: str) -> list[str]:
    """Run ``statement`` in a fresh interpreter; return the mscomm_sync modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, statement],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout)
    return modules


@pytest.mark.parametrize("statement", ["import mscomm_sync.registry", "import mscomm_sync"])
def test_import_does_not_load_the_etcd_backend(statement: str) -> None:
    """Importing the registry package (or the top-level package) leaves etcd unloaded."""
    modules = loaded_after(statement)
    assert "mscomm_sync.registry" in modules  # the probe saw the import happen
    assert [m for m in ETCD_MODULES if m in modules] == []


def test_file_registry_does_not_load_the_etcd_backend() -> None:
    """Opening a file registry through open_registry leaves etcd unloaded."""
    statement = textwrap.dedent(
        """
        import tempfile, os
        from mscomm_sync.registry import open_registry
        with tempfile.TemporaryDirectory() as d:
            open_registry(os.path.join(d, "registry.json")).close()
        """
    )
    assert [m for m in ETCD_MODULES if m in loaded_after(statement)] == []


def test_etcd_names_are_importable_from_the_package() -> None:
    """``from mscomm_sync.registry import EtcdRegistry`` loads and returns the backend's class."""
    statement = textwrap.dedent(
        """
        from mscomm_sync.registry import DEFAULT_LEASE_TTL, EtcdRegistry
        from mscomm_sync.registry import etcd
        assert EtcdRegistry is etcd.EtcdRegistry, EtcdRegistry
        assert DEFAULT_LEASE_TTL == etcd.DEFAULT_LEASE_TTL, DEFAULT_LEASE_TTL
        """
    )
    assert "mscomm_sync.registry.etcd" in loaded_after(statement)


def test_lazy_names_are_listed() -> None:
    """The lazy names are in ``__all__`` and ``dir()``, like the eager ones."""
    for name in ("EtcdRegistry", "DEFAULT_LEASE_TTL"):
        assert name in mscomm_sync.registry.__all__
        assert name in dir(mscomm_sync.registry)


def test_unknown_name_raises_attribute_error() -> None:
    """Asking the package for a name it does not have is an AttributeError naming it."""
    with pytest.raises(AttributeError, match="NoSuchRegistry"):
        getattr(mscomm_sync.registry, "NoSuchRegistry")  # noqa: B009
