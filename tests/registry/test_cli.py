"""``mscomm registry``: tables, --json, and any registry location."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from flask import Flask

from mscomm_sync.cli import main
from mscomm_sync.registry import EtcdRegistry, FileRegistry
from mscomm_sync.registry.table import text_width
from mscomm_sync.testing import LiveServer

from .conftest import EtcdCluster


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["registry", *argv])
    return status, capsys.readouterr().out


def run_all(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``mscomm ARGV`` in-process; return the status, stdout and stderr."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def where(tmp_path: Path) -> str:
    """A registry file holding billing at :8001 and audit at :8002."""
    path = str(tmp_path / "r.json")
    with FileRegistry(path) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        registry.register("audit", "http://127.0.0.1:8002")
    return path


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
    assert out.splitlines()[1].split()[3:5] == ["healthy", "HTTP"]


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


@pytest.mark.etcd
def test_deregister_of_nothing_in_etcd_exits_one(
    capsys: pytest.CaptureFixture[str], etcd_node: EtcdCluster, etcd_prefix: str
) -> None:
    """etcd reports how many keys it deleted: none makes deregister exit 1, as for a file."""
    where = etcd_node.location(etcd_prefix)
    status, out, err = run_all(
        capsys, "registry", "deregister", "nosuch", "http://x", "--registry", where
    )
    assert (status, out) == (1, "")
    assert "nothing removed" in err


def test_register_without_any_location_creates_the_per_user_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no --registry and no MSCOMM_REGISTRY, register creates the default file's directory."""
    monkeypatch.delenv("MSCOMM_REGISTRY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    status, out, _ = run_all(capsys, "registry", "register", "billing", "http://127.0.0.1:8001")
    path = tmp_path / "state" / "mscomm" / "registry.json"
    assert (status, out) == (0, f"registered billing at http://127.0.0.1:8001 in {path}\n")
    assert path.is_file()


def test_list_of_a_missing_registry_file_is_an_error_that_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A mistyped --registry exits 2, names the path, and leaves no file or directory behind."""
    missing = tmp_path / "typo" / "r.json"
    status, out, err = run_all(capsys, "registry", "list", "--registry", str(missing))
    assert (status, out) == (2, "")
    assert f"registry file {missing} does not exist" in err and "--registry" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", [["health"], ["deregister", "billing", "http://x"]])
def test_other_reads_of_a_missing_registry_file_are_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, action: list[str]
) -> None:
    """health and deregister on a missing file exit 2 and create nothing either."""
    missing = tmp_path / "r.json"
    status, _, err = run_all(capsys, "registry", *action, "--registry", str(missing))
    assert status == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_default_registry_names_the_variable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without --registry, the error says MSCOMM_REGISTRY named the missing file."""
    status, _, err = run_all(capsys, "registry", "list")
    assert status == 2
    assert str(tmp_path / "default-registry.json") in err and "$MSCOMM_REGISTRY" in err


def test_list_of_an_empty_registry_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An existing registry with no instances exits 0 and says which registry was read."""
    path = tmp_path / "r.json"
    with FileRegistry(path) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        registry.deregister("billing", "http://127.0.0.1:8001")
    status, out, _ = run_all(capsys, "registry", "list", "--registry", str(path))
    assert (status, out) == (0, f"no instances registered in {path}\n")


def test_list_of_an_unknown_service_exits_one_and_names_the_known_ones(
    capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """A mistyped service name exits 1 and lists the services that are registered."""
    status, out, err = run_all(capsys, "registry", "list", "biling", "--registry", where)
    assert (status, out) == (1, "")
    assert f"no instances of service 'biling' in {where}" in err
    assert "audit, billing" in err


def test_list_of_an_unknown_service_as_json_prints_an_empty_list(
    capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """With --json the answer is still machine-readable ([]), and the status is still 1."""
    status, out, _ = run_all(capsys, "registry", "list", "biling", "--json", "--registry", where)
    assert (status, json.loads(out)) == (1, [])


def test_register_into_a_missing_directory_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """register into a directory that does not exist exits 2, says so, and creates nothing."""
    path = tmp_path / "nonexistent" / "dir" / "reg.json"
    status, out, err = run_all(
        capsys, "registry", "register", "billing", "http://x:1", "--registry", str(path)
    )
    assert (status, out) == (2, "")
    assert "does not exist" in err and "--create-parents" in err
    assert list(tmp_path.iterdir()) == []


def test_register_with_create_parents_creates_the_directories(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--create-parents asks for the missing directories, and the instance is registered."""
    path = tmp_path / "new" / "dir" / "reg.json"
    argv = ["register", "billing", "http://127.0.0.1:8001", "--create-parents"]
    status, out, _ = run_all(capsys, "registry", *argv, "--registry", str(path))
    assert (status, out) == (0, f"registered billing at http://127.0.0.1:8001 in {path}\n")
    with FileRegistry(path) as registry:
        assert registry.services() == ["billing"]


def test_deregister_of_an_unknown_instance_exits_one_and_says_so(
    capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """deregister nosuch http://x prints no success, exits 1 and says nothing was removed."""
    before = Path(where).read_bytes()
    status, out, err = run_all(
        capsys, "registry", "deregister", "nosuch", "http://x", "--registry", where
    )
    assert (status, out) == (1, "")
    assert f"nothing registered as 'nosuch' at http://x in {where}; nothing removed" in err
    assert Path(where).read_bytes() == before


def test_deregister_of_a_wrong_url_names_the_registered_ones(
    capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """A wrong URL for a known service exits 1 and shows that service's URLs."""
    status, _, err = run_all(
        capsys, "registry", "deregister", "billing", "http://127.0.0.1:9", "--registry", where
    )
    assert status == 1 and "'billing' has http://127.0.0.1:8001" in err


def test_deregister_as_json_reports_false(capsys: pytest.CaptureFixture[str], where: str) -> None:
    """With --json, a removal that found nothing prints deregistered: false."""
    status, out, _ = run_all(
        capsys, "registry", "deregister", "nosuch", "http://x", "--json", "--registry", where
    )
    assert status == 1
    assert json.loads(out) == {"service": "nosuch", "url": "http://x", "deregistered": False}


@pytest.mark.parametrize(
    "argv",
    [
        ["--registry", "{where}", "--json", "registry", "list"],
        ["--json", "registry", "--registry", "{where}", "list"],
        ["registry", "list", "--json", "--registry", "{where}"],
        [
            "--registry",
            "/nonexistent/r.json",
            "registry",
            "list",
            "--registry",
            "{where}",
            "--json",
        ],
    ],
)
def test_options_are_accepted_before_and_after_the_subcommand(
    capsys: pytest.CaptureFixture[str], where: str, argv: list[str]
) -> None:
    """--registry and --json work globally, after `registry`, or after the action (last wins)."""
    status, out, _ = run_all(capsys, *(a.replace("{where}", where) for a in argv))
    assert status == 0
    assert {i["service"] for i in json.loads(out)} == {"billing", "audit"}


def test_health_says_why_an_instance_is_unhealthy_and_how_long_it_took(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--json gives each instance's reason (status code, refused connection) and duration."""
    app = Flask("down")
    app.add_url_rule("/health", "health", lambda: ("down", 503))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    where = str(tmp_path / "r.json")
    with LiveServer(app) as live:
        down = live.url
        with FileRegistry(where) as registry:
            registry.register("billing", down)
            registry.register("billing", dead)
        status, out, _ = run_all(capsys, "--json", "registry", "health", "--registry", where)
    rows = {i["url"]: i for i in json.loads(out)}
    assert status == 1
    assert (rows[down]["reason"], rows[down]["status"]) == ("HTTP 503", 503)
    assert (rows[dead]["reason"], rows[dead]["status"]) == ("connection refused", None)
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in rows.values())


def test_health_table_shows_the_check_and_its_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The table has CHECK and TIME columns: 'connection refused' and a duration in ms."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    where = str(tmp_path / "r.json")
    with FileRegistry(where) as registry:
        registry.register("billing", dead)
    status, out, _ = run_all(capsys, "registry", "health", "--registry", where)
    header, row = out.splitlines()
    assert status == 1
    assert header.split() == ["SERVICE", "URL", "ENDPOINT", "STATE", "CHECK", "TIME"]
    assert row.split()[3:6] == ["UNHEALTHY", "connection", "refused"]
    assert row.endswith(" ms") or row.endswith(" s")


def test_health_of_an_unknown_service_exits_one(
    capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """Probing a service with no instances is a not-found answer, not a healthy one."""
    status, _, err = run_all(capsys, "registry", "health", "biling", "--registry", where)
    assert status == 1 and "no instances of service 'biling'" in err


def test_table_columns_line_up_with_wide_metadata(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Rows of different widths, East Asian metadata included, start each column together."""
    path = tmp_path / "r.json"
    with FileRegistry(path) as registry:
        registry.register("billing", "http://127.0.0.1:8001", metadata={"zone": "日本"})
        registry.register("a", "http://h:1", health_endpoint="/ready-and-willing")
    _, out, _ = run_all(capsys, "registry", "list", "--registry", str(path))
    lines = out.splitlines()
    metadata_column = {text_width(line[: line.rindex(line.split()[-1])]) for line in lines}
    assert len(metadata_column) == 1
    assert lines[-1].endswith("zone=日本")
