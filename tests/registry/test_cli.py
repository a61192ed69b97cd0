"""``mscomm registry``: tables, --json, and any registry location."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from flask import Flask

from mscomm_sync.cli import main
from mscomm_sync.registry import EtcdRegistry, FileRegistry
from mscomm_sync.testing import LiveServer

from .conftest import EtcdCluster


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["registry", *argv])
    return status, capsys.readouterr().out


def test_register_then_list_as_a_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A registered instance shows up as a row under column headers."""
    where = str(tmp_path / "r.json")
    run(
        capsys,
        "register",
        "billing",
        "http://127.0.0.1:8001",
        "--metadata",
        "zone=a",
        "--registry",
        where,
    )
    status, out = run(capsys, "list", "--registry", where)
    header, row = out.splitlines()
    assert status == 0
    assert header.split() == ["SERVICE", "URL", "ENDPOINT", "METADATA"]
    assert row.split() == ["billing", "http://127.0.0.1:8001", "/health", "zone=a"]


def test_list_as_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--json prints machine-readable instances."""
    where = str(tmp_path / "r.json")
    with FileRegistry(where) as registry:
        registry.register("billing", "http://127.0.0.1:8001", health_endpoint="/ready")
    status, out = run(capsys, "list", "--json", "--registry", where)
    assert status == 0
    assert json.loads(out) == [
        {
            "service": "billing",
            "url": "http://127.0.0.1:8001",
            "health_endpoint": "/ready",
            "metadata": {},
        }
    ]


def test_list_one_service(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A service argument limits the listing to that service."""
    where = str(tmp_path / "r.json")
    with FileRegistry(where) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        registry.register("audit", "http://127.0.0.1:8002")
    _, out = run(capsys, "list", "audit", "--json", "--registry", where)
    assert [i["service"] for i in json.loads(out)] == ["audit"]


def test_registry_defaults_to_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without --registry the CLI uses MSCOMM_REGISTRY, like initialize_registry."""
    run(capsys, "register", "billing", "http://127.0.0.1:8001")
    with FileRegistry(tmp_path / "default-registry.json") as registry:
        assert len(registry.get_instances("billing")) == 1


def test_deregister_removes_the_instance(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """deregister removes the named instance."""
    where = str(tmp_path / "r.json")
    with FileRegistry(where) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
    status, _ = run(capsys, "deregister", "billing", "http://127.0.0.1:8001", "--registry", where)
    _, out = run(capsys, "list", "--json", "--registry", where)
    assert (status, json.loads(out)) == (0, [])


def test_bad_metadata_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--metadata without '=' exits with status 2 and a message."""
    where = str(tmp_path / "r.json")
    status = main(
        ["registry", "register", "b", "http://127.0.0.1:1", "--metadata", "x", "--registry", where]
    )
    assert status == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_health_reports_each_instance_and_fails_if_any_is_down(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """health probes once, prints each verdict, and exits 1 when an instance is down."""
    app = Flask("up")
    app.add_url_rule("/health", "health", lambda: "ok")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    where = str(tmp_path / "r.json")
    with LiveServer(app) as live:
        up = live.url
        with FileRegistry(where) as registry:
            registry.register("billing", up)
            registry.register("billing", dead)
        status, out = run(capsys, "health", "--json", "--registry", where)
    verdicts = {i["url"]: i["healthy"] for i in json.loads(out)}
    assert status == 1
    assert verdicts == {up: True, dead: False}


def test_health_exits_zero_when_all_are_up(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """health exits 0 and prints a table when every instance answers 2xx."""
    app = Flask("up")
    app.add_url_rule("/health", "health", lambda: "ok")
    where = str(tmp_path / "r.json")
    with LiveServer(app) as live:
        with FileRegistry(where) as registry:
            registry.register("billing", live.url)
        status, out = run(capsys, "health", "--registry", where)
    assert status == 0
    assert out.splitlines()[1].split()[-1] == "healthy"


@pytest.mark.etcd
def test_cli_works_against_etcd(
    capsys: pytest.CaptureFixture[str], etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """register, list and deregister work on an etcd:// location; entries outlive the CLI."""
    where = etcd_node.location(etcd_prefix)
    run(capsys, "register", "billing", "http://127.0.0.1:8001", "--registry", where)
    with EtcdRegistry(where) as registry:
        assert len(registry.get_instances("billing")) == 1
    _, out = run(capsys, "list", "--json", "--registry", where)
    assert [i["url"] for i in json.loads(out)] == ["http://127.0.0.1:8001"]
    run(capsys, "deregister", "billing", "http://127.0.0.1:8001", "--registry", where)
    _, out = run(capsys, "list", "--json", "--registry", where)
    assert json.loads(out) == []
