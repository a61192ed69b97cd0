"""Metrics through the real SDK's in-memory reader: calls, attempts, breaker transitions,
requests and refusals, health verdicts, replay-store and registry errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
import requests

from mscomm_sync import (
    BreakerPolicy,
    CallPolicy,
    CircuitOpenError,
    FileRegistry,
    HealthCheckConfig,
    HealthPoller,
    Instance,
    ServiceUnavailableError,
    initialize_telemetry,
)
from mscomm_sync.replay import SqliteReplayStore

from .services import Sdk, Services, attributes

Build = Callable[..., Services]


def ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps({"ok": True}).encode()]


def test_call_durations_are_counted_per_target_and_status(sdk: Sdk, services: Build) -> None:
    """Three answered calls and a 404 make two series of the call histogram, counted
    exactly; every attempt is counted as a first attempt."""
    fleet = services("orders", "billing")
    fleet.serve("billing", ok, telemetry=sdk.telemetry())
    orders = fleet.client("orders", telemetry=sdk.telemetry())
    for _ in range(3):
        orders.request(target_service="billing", endpoint="/a", method="GET")
    orders.request(target_service="billing", endpoint="/missing", method="GET")
    series = {
        attributes(p)["http.response.status_code"]: p
        for p in sdk.points("mscomm.client.call.duration")
    }
    assert {code: p.count for code, p in series.items()} == {200: 3, 404: 1}
    assert attributes(series[200]) == {
        "mscomm.target": "billing", "http.request.method": "GET",
        "http.response.status_code": 200,
    }  # fmt: skip
    assert all(p.sum >= 0 for p in series.values())
    (attempts,) = sdk.points("mscomm.client.attempts")
    assert attempts.value == 4
    assert attributes(attempts) == {"mscomm.target": "billing", "mscomm.attempt.kind": "first"}
    server = sdk.points("mscomm.server.request.duration")
    assert sum(p.count for p in server) == 4
    assert {attributes(p)["mscomm.caller"] for p in server} == {"orders"}
    assert {attributes(p)["mscomm.protocol"] for p in server} == {"2"}
    per_attempt = sdk.points("http.client.request.duration")
    assert sum(p.count for p in per_attempt) == 4
    assert {attributes(p)["server.address"] for p in per_attempt} == {"127.0.0.1"}


def test_errors_and_breaker_transitions_are_counted(sdk: Sdk, services: Build) -> None:
    """A call that fails opens the circuit (one transition counted), and the refused call
    after it is measured with its error type."""
    fleet = services("orders", "billing")
    fleet.registry.register("billing", "http://127.0.0.1:9")
    policy = attrs.evolve(CallPolicy(), breaker=BreakerPolicy(failure_threshold=1))
    orders = fleet.client("orders", telemetry=sdk.telemetry(), policy=policy)
    with pytest.raises(ServiceUnavailableError):
        orders.request(target_service="billing", endpoint="/x", method="POST")
    with pytest.raises(CircuitOpenError):
        orders.request(target_service="billing", endpoint="/x", method="POST")
    (transition,) = sdk.points("mscomm.client.breaker.transitions")
    assert transition.value == 1
    assert attributes(transition) == {
        "mscomm.target": "billing", "mscomm.breaker.from": "closed", "mscomm.breaker.to": "open",
    }  # fmt: skip
    errors = {
        attributes(p)["error.type"]: p.count for p in sdk.points("mscomm.client.call.duration")
    }
    assert errors == {"ServiceUnreachableError": 1, "CircuitOpenError": 1}
    kinds = {
        (attributes(p)["mscomm.attempt.kind"], attributes(p).get("mscomm.retry.reason")): p.value
        for p in sdk.points("mscomm.client.attempts")
    }
    # One instance: the refused connection is tried again there, twice.
    assert kinds == {("first", None): 1, ("retry", "connection refused"): 2}


def test_refusals_are_counted_by_status_and_reason(sdk: Sdk, services: Build) -> None:
    """A plaintext request and a forged seal are refusals, each counted under its reason."""
    fleet = services("orders", "billing")
    url = fleet.serve("billing", ok, telemetry=sdk.telemetry())
    assert requests.post(url + "/charge", data=b"x", timeout=10).status_code == 401
    forged = {"X-Encrypted-Payload": "true", "X-Encryption-Service": "orders"}
    assert requests.post(url + "/charge", data=b"x", headers=forged, timeout=10).status_code == 401
    refusals = {
        attributes(p)["mscomm.reason"]: p.value for p in sdk.points("mscomm.server.refusals")
    }
    assert refusals == {
        "plaintext request": 1,
        "verification failed: unsupported version": 1,
    }
    durations = sdk.points("mscomm.server.request.duration")
    assert {attributes(p)["http.response.status_code"]: p.count for p in durations} == {401: 2}
    assert {attributes(p)["mscomm.sealed"] for p in durations} == {False}


def test_health_probes_and_verdicts_are_counted(sdk: Sdk) -> None:
    """Two failed probes (fall=2) make one instance unhealthy: two failures and one
    verdict counted."""
    instance = Instance(service="billing", url="http://127.0.0.1:9")
    poller = HealthPoller(
        lambda: [instance],
        config=HealthCheckConfig(fall=2, timeout=1.0),
        telemetry=sdk.telemetry(),
    )
    try:
        poller.poll_once()
        poller.poll_once()
    finally:
        poller.stop()
    probes = {attributes(p)["mscomm.result"]: p.value for p in sdk.points("mscomm.health.probes")}
    assert probes == {"fail": 2}
    (verdict,) = sdk.points("mscomm.health.verdicts")
    assert (attributes(verdict)["mscomm.verdict"], verdict.value) == ("unhealthy", 1)


def test_replay_store_errors_are_counted_by_the_process_default(sdk: Sdk, tmp_path: Path) -> None:
    """A replay store whose database is not a database refuses, and the process's default
    telemetry counts it."""
    initialize_telemetry(sdk.telemetry())
    path = tmp_path / "replay.sqlite3"
    path.write_bytes(b"not a database, just bytes" * 100)
    path.chmod(0o600)
    store = SqliteReplayStore(path)
    assert store.add("orders/" + "ab" * 16, 1e12) is False
    (error,) = sdk.points("mscomm.replay.errors")
    assert attributes(error) == {"mscomm.store": "sqlite", "mscomm.reason": "failed"}


def test_registry_errors_are_counted_by_the_process_default(sdk: Sdk, tmp_path: Path) -> None:
    """A registry file that turns unreadable keeps its last good data, counted as an error."""
    initialize_telemetry(sdk.telemetry())
    path = tmp_path / "registry.json"
    registry = FileRegistry(path)
    try:
        registry.register("billing", "http://127.0.0.1:8000")
        assert registry.get_instances("billing")
        path.write_text("{ not json")
        assert registry.get_instances("billing")  # the last good data
    finally:
        registry.close()
    (error,) = sdk.points("mscomm.registry.errors")
    assert attributes(error) == {"mscomm.registry": "file", "mscomm.reason": "unreadable"}
