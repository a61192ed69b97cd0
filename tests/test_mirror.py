"""The tests mirror the package: each module with logic has its own test file, or says where.

``mscomm_sync/<pkg>/<mod>.py`` is tested in ``tests/<pkg>/test_<mod>.py``
(``tests/test_<mod>.py`` for a top-level module). A module whose behaviour
is only meaningful end to end (the call loop through a real server, the
demo's steps, the fault proxy's threads) is listed in ``TESTED_IN`` with the
files that test it, so that anyone can still find its tests in one step.
A new module must get a test file or an entry here, or this test fails.
"""

from __future__ import annotations

from pathlib import Path

import mscomm_sync

PACKAGE = Path(mscomm_sync.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent

#: Modules tested through a larger whole, and the files that do it.
TESTED_IN: dict[str, tuple[str, ...]] = {
    "_fast": ("test_fast.py",),
    "__main__": ("test_cli.py",),
    # One call: the adapter (the hub), the call's facts, the attempt loop, the
    # transport and its pools are exercised through real servers.
    "client/adapter": ("client/test_client.py", "client/test_retries.py"),
    "client/call": ("client/test_client.py", "client/test_endpoint_binding.py"),
    "client/attempts": ("client/test_retries.py", "client/test_delivery.py"),
    "client/transport": (
        "client/test_answer_bounds.py",
        "client/test_large_answers.py",
        "client/test_v2_calls.py",
    ),
    "client/session": ("client/test_client.py", "client/test_session_compat.py"),
    "client/idempotent": ("wsgi/test_idempotency.py",),
    "wsgi/idempotent": ("wsgi/test_idempotency.py",),
    "wsgi/environ": ("wsgi/test_v1_headers.py", "wsgi/test_identity.py"),
    # The stores share one contract, tested once for each store.
    "idempotency/store": ("idempotency/test_stores.py",),
    "idempotency/memory": ("idempotency/test_stores.py",),
    "idempotency/sqlite": ("idempotency/test_stores.py",),
    "idempotency/redis": ("idempotency/test_stores.py",),
    "idempotency/default": ("idempotency/test_stores.py",),
    "registry/probe": ("registry/test_health.py",),
    # Telemetry is observed with the real SDK across real services.
    "telemetry/access": ("telemetry/test_logs.py",),
    "telemetry/calls": ("telemetry/test_traces.py", "telemetry/test_metrics.py"),
    "telemetry/otel": ("telemetry/test_traces.py", "telemetry/test_metrics.py"),
    "telemetry/instruments": ("telemetry/test_metrics.py", "test_import.py"),
    "telemetry/process": ("telemetry/test_options.py",),
    "telemetry/serving": ("telemetry/test_traces.py", "telemetry/test_deadlines.py"),
    # The testing helpers we ship, tested as a user's tests would use them.
    "testing/keys": ("testing/test_keys_and_registry.py", "testing/test_key_factory.py"),
    "testing/mock_routes": ("testing/test_mock.py",),
    "testing/mock_types": ("testing/test_mock.py",),
    "testing/mock_wire": ("testing/test_mock.py",),
    "testing/proxy_accept": ("testing/test_proxy.py",),
    "testing/proxy_link": ("testing/test_proxy.py",),
    "testing/proxy_types": ("testing/test_proxy.py",),
    "testing/server": ("testing/test_plugin.py", "testing/test_service.py"),
    "testing/trust_files": ("testing/test_fixtures_v2.py",),
    # The demo is run whole, as `make demo` runs it.
    "demo/__main__": ("demo/test_demo.py",),
    "demo/fleet": ("demo/test_demo.py",),
    "demo/gunicorn_conf": ("demo/test_demo.py",),
    "demo/output": ("demo/test_demo.py",),
    "demo/processes": ("demo/test_demo.py",),
    "demo/services": ("demo/test_demo.py",),
    "demo/steps": ("demo/test_demo.py",),
}


def modules() -> list[str]:
    """Every module of the package but the ``__init__`` files, as ``pkg/mod``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__init__.py":
            found.append(path.relative_to(PACKAGE).with_suffix("").as_posix())
    return found


def own_test_file(module: str) -> Path:
    folder, _, name = module.rpartition("/")
    return TESTS / folder / f"test_{name}.py"


def test_every_module_has_its_tests_or_says_where_they_are() -> None:
    unplaced = [m for m in modules() if not own_test_file(m).exists() and m not in TESTED_IN]
    assert unplaced == [], "add tests/<pkg>/test_<mod>.py, or an entry in TESTED_IN"


def test_the_table_names_only_real_modules_and_files() -> None:
    known = set(modules())
    assert set(TESTED_IN) <= known
    missing = [f for files in TESTED_IN.values() for f in files if not (TESTS / f).exists()]
    assert missing == []


def test_a_module_with_its_own_test_file_is_not_also_listed() -> None:
    assert [m for m in TESTED_IN if own_test_file(m).exists()] == []
