"""Tests that importing mscomm_sync does no work: no threads, files, sockets or logging set-up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from functools import cache
from pathlib import Path
from typing import Any

import mscomm_sync

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: an audit hook records what happens while the
# package (and, unless pre-imported, its dependencies) is imported.
PROBE = textwrap.dedent(
    """
    import json, sys, threading
    for name in sys.argv[1:]:
        __import__(name)
    threads_before = threading.active_count()
    events = []
    WATCHED = ("open", "_thread.start_new_thread", "os.system", "subprocess.Popen")
    def hook(event, args):
        if event in WATCHED or event.startswith("socket."):
            events.append([event, repr(args)[:300]])
    sys.addaudithook(hook)
    import mscomm_sync
    import logging
    print(json.dumps({
        "events": events,
        "threads_before": threads_before,
        "threads_after": threading.active_count(),
        "thread_names": [t.name for t in threading.enumerate()],
        "modules": sorted(sys.modules),
        "root_handlers": len(logging.getLogger().handlers),
        "package_handlers": len(logging.getLogger("mscomm_sync").handlers),
        "root_level": logging.getLogger().level,
    }))
    """
)

# Runtime dependencies: what they do at import is theirs, not ours (urllib3,
# for one, binds a probe socket to ::1 at import to detect IPv6 support).
RUNTIME_DEPENDENCIES = [
    "requests",
    "urllib3",
    "attrs",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.kdf.hkdf",
]
OPTIONAL_DEPENDENCIES = [
    "django",
    "celery",
    "kombu",
    "flask",
    "werkzeug",
    "gunicorn",
    "waitress",
    "opentelemetry",
]
MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


@cache
def probe(*preimport: str) -> dict[str, Any]:
    """Import mscomm_sync in a fresh interpreter and report what happened (cached)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *preimport],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def file_opens(events: list[list[str]]) -> list[str]:
    """The opened paths that are not module files loaded by the import system."""
    opened = []
    for event, args in events:
        if event != "open":
            continue
        path = args.split(",", 1)[0].strip("(")
        if not path.strip("'\"").endswith(MODULE_SUFFIXES):
            opened.append(args)
    return opened


def test_probe_sees_what_it_should() -> None:
    """The probe's audit hook does record imports' file opens (so empty results mean something)."""
    report = probe()
    assert any(e == "open" and "mscomm_sync" in a for e, a in report["events"])


def test_import_starts_no_threads() -> None:
    """After import mscomm_sync only the main thread exists."""
    report = probe()
    assert report["threads_after"] == 1, report["thread_names"]
    assert not [e for e in report["events"] if e[0] == "_thread.start_new_thread"]


def test_import_reads_no_files() -> None:
    """Importing the package (dependencies included) opens no file but module files."""
    assert file_opens(probe()["events"]) == []


def test_import_opens_no_sockets_of_its_own() -> None:
    """With runtime dependencies already imported, importing mscomm_sync opens no socket."""
    report = probe(*RUNTIME_DEPENDENCIES)
    assert [e for e in report["events"] if e[0].startswith("socket.")] == []
    assert file_opens(report["events"]) == []
    assert report["threads_after"] == report["threads_before"] == 1


def test_import_makes_no_network_calls() -> None:
    """No connect, send or name lookup happens while importing the package and its dependencies."""
    network = {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
    }
    assert [e for e in probe()["events"] if e[0] in network] == []


def test_import_runs_no_subprocess() -> None:
    """Importing the package starts no process."""
    events = probe()["events"]
    assert [e for e in events if e[0] in {"os.system", "subprocess.Popen"}] == []


def test_optional_dependencies_are_not_imported() -> None:
    """Django, Celery, Flask, Werkzeug and OpenTelemetry are not loaded by import mscomm_sync."""
    modules = set(probe()["modules"])
    loaded = [m for m in OPTIONAL_DEPENDENCIES if m in modules]
    assert loaded == []
    assert "mscomm_sync" in modules


def test_import_configures_no_logging() -> None:
    """Importing adds no handlers and sets no levels."""
    report = probe()
    assert report["root_handlers"] == 0
    assert report["package_handlers"] == 0
    assert report["root_level"] == 30  # logging.WARNING, Python's default


def test_all_names_exist() -> None:
    """Every name in mscomm_sync.__all__ is defined."""
    missing = [name for name in mscomm_sync.__all__ if not hasattr(mscomm_sync, name)]
    assert missing == []


def test_errors_are_reexported() -> None:
    """MscommError and ConfigurationError are the objects from mscomm_sync.errors."""
    from mscomm_sync import errors

    assert mscomm_sync.MscommError is errors.MscommError
    assert mscomm_sync.ConfigurationError is errors.ConfigurationError
    assert "MscommError" in mscomm_sync.__all__
    assert "ConfigurationError" in mscomm_sync.__all__


def test_package_exports_only_public_names() -> None:
    """Every public attribute of the package (submodules aside) is listed in __all__."""
    extra = [
        name
        for name, value in vars(mscomm_sync).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in mscomm_sync.__all__
    ]
    assert extra == []


# A client and a middleware built and used with telemetry off, in a fresh
# interpreter: nothing of OpenTelemetry may be loaded, installed or not.
TELEMETRY_OFF = textwrap.dedent(
    """
    import json, os, sys
    os.environ.pop("MSCOMM_TELEMETRY", None)
    from mscomm_sync import EncryptionMiddleware, MicroServiceClient, Telemetry
    from mscomm_sync.keyring import Keyring, generate_key
    from mscomm_sync.replay import MemoryReplayStore
    keys = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    app = EncryptionMiddleware(lambda e, s: s("200 OK", []) and [], "billing", keyring=keys,
                               replay_store=MemoryReplayStore(), allowed_callers=["orders"])
    MicroServiceClient("orders", keyring=keys).close()
    MicroServiceClient("orders", keyring=keys, telemetry=False).close()
    MicroServiceClient("orders", keyring=keys, telemetry=Telemetry.off()).close()
    MicroServiceClient("orders", keyring=keys, telemetry=Telemetry(otel=False, access_log=True))
    status = []
    app({"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "wsgi.input": None},
        lambda line, headers, exc_info=None: status.append(line))
    print(json.dumps({"status": status,
                      "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
    """
)


def test_telemetry_off_imports_no_opentelemetry() -> None:
    """Clients and a middleware built and used with telemetry off (by default, False, off
    settings, access log only) load no OpenTelemetry module."""
    result = subprocess.run(
        [sys.executable, "-c", TELEMETRY_OFF],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["status"] == ["200 OK"]  # the request was served
    assert report["loaded"] == []


def test_telemetry_on_imports_opentelemetry_api_only() -> None:
    """With telemetry on, OpenTelemetry's API is loaded, never its SDK (the app chooses one)."""
    script = textwrap.dedent(
        """
        import json, sys
        from mscomm_sync import MicroServiceClient
        from mscomm_sync.keyring import Keyring, generate_key
        MicroServiceClient("orders", keyring=Keyring.from_mapping({"orders": generate_key()}),
                           telemetry=True).close()
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    loaded = json.loads(result.stdout)
    assert "opentelemetry.trace" in loaded
    assert not [m for m in loaded if m.startswith("opentelemetry.sdk")]
