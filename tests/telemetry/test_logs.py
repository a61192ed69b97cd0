"""Structured logs: every log call carries its fields in extra=, under stable mscomm.*
names; the access logs write one line per call and per request; no secret in any."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

import mscomm_sync
from mscomm_sync import Telemetry

from .services import Services

Build = Callable[..., Services]
PACKAGE = Path(mscomm_sync.__file__).resolve().parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
SECRET_BODY = "card-4111-1111-1111-1111"


def log_calls() -> list[tuple[str, int, ast.Call]]:
    """Every call of a logger method in the package (``log.info(...)``, ``logger.error(...)``)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id.endswith("log")
            ):
                found.append((str(path.relative_to(PACKAGE)), node.lineno, node))
    return found


def test_the_finder_finds_log_calls() -> None:
    """The scan sees the package's log calls (so the check below means something)."""
    places = {place for place, _line, _node in log_calls()}
    assert {"wsgi/log.py", "client/attempts.py", "registry/health.py"} <= places


def test_every_log_call_carries_mscomm_fields() -> None:
    """Each log call passes extra= with string keys, all named mscomm.<something>."""
    wrong = []
    for place, line, node in log_calls():
        extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
        if extra is None:
            wrong.append(f"{place}:{line} has no extra=")
            continue
        if isinstance(extra, ast.Dict):
            keys = [k.value if isinstance(k, ast.Constant) else None for k in extra.keys]
            named = [k for k in keys if k is not None]
            if any(not str(k).startswith("mscomm.") for k in named):
                wrong.append(f"{place}:{line} has a field outside mscomm.*")
    assert wrong == []


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k.startswith("mscomm.")}


def test_the_access_logs_write_one_line_per_call_and_per_request(
    services: Build, caplog: pytest.LogCaptureFixture
) -> None:
    """With access_log on, a call is one client line and one server line, with method,
    target, route, status, duration, attempts, caller and request id as fields, and the
    payload, the query and the keys in neither."""
    fleet = services("orders", "billing")

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"echo": SECRET_BODY}).encode()]

    logs = Telemetry(otel=False, access_log=True)
    fleet.serve("billing", billing, telemetry=logs)
    orders = fleet.client("orders", telemetry=logs)
    with caplog.at_level(logging.INFO, logger="mscomm_sync"):
        orders.request(
            target_service="billing", endpoint="/charge", method="POST",
            payload={"card": SECRET_BODY}, params={"token": SECRET_BODY},
            headers={"X-Request-Id": "req-access"},
        )  # fmt: skip
    client_lines = [r for r in caplog.records if r.name == "mscomm_sync.access.client"]
    server_lines = [r for r in caplog.records if r.name == "mscomm_sync.access.server"]
    assert len(client_lines) == len(server_lines) == 1
    call, request = fields_of(client_lines[0]), fields_of(server_lines[0])
    assert {k: call[k] for k in ("mscomm.target", "mscomm.method", "mscomm.route",
                                 "mscomm.status", "mscomm.attempts", "mscomm.request_id",
                                 "mscomm.service")} == {
        "mscomm.target": "billing", "mscomm.method": "POST", "mscomm.route": "/charge",
        "mscomm.status": 200, "mscomm.attempts": 1, "mscomm.request_id": "req-access",
        "mscomm.service": "orders",
    }  # fmt: skip
    assert call["mscomm.duration"] >= 0
    assert {k: request[k] for k in ("mscomm.caller", "mscomm.status", "mscomm.route",
                                    "mscomm.request_id", "mscomm.protocol")} == {
        "mscomm.caller": "orders", "mscomm.status": 200, "mscomm.route": "/charge",
        "mscomm.request_id": "req-access", "mscomm.protocol": "2",
    }  # fmt: skip
    assert client_lines[0].getMessage().startswith("call POST billing /charge -> 200 in ")
    secrets = [SECRET_BODY, *[k.text() for k in fleet.fleet.keys["orders"]]]
    for record in caplog.records:
        text = record.getMessage() + json.dumps(fields_of(record), default=str)
        assert not [s for s in secrets if s in text], record.name


def test_access_logs_are_off_unless_asked_for(
    services: Build, caplog: pytest.LogCaptureFixture
) -> None:
    """By default (no telemetry settings, no variables) nothing is written to the access
    loggers, even at DEBUG."""
    fleet = services("orders", "billing")
    fleet.serve("billing", lambda e, s: s("200 OK", []) or [b""])
    with caplog.at_level(logging.DEBUG):
        fleet.client("orders").request(target_service="billing", endpoint="/x", method="POST")
    assert not [r for r in caplog.records if r.name.startswith("mscomm_sync.access")]


def test_a_refusal_is_a_warning_with_its_reason_as_a_field(
    services: Build, caplog: pytest.LogCaptureFixture
) -> None:
    """A forged request is refused with its reason at WARNING on the server, every fact a
    field; a refused request is also an access line with its status."""
    fleet = services("orders", "billing")
    url = fleet.serve(
        "billing", lambda e, s: [b""], telemetry=Telemetry(otel=False, access_log=True)
    )
    forged = {"X-Encrypted-Payload": "true", "X-Encryption-Service": "orders",
              "X-Mscomm-Seal": "v=2;kid=x;ts=1;id=00", "X-Request-Id": "req-forged"}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="mscomm_sync"):
        assert (
            requests.post(
                url + "/charge?x=1", headers=forged, data=SECRET_BODY, timeout=10
            ).status_code
            == 401
        )
    (refusal,) = [r for r in caplog.records if r.name == "mscomm_sync.wsgi"]
    assert refusal.levelno == logging.WARNING
    fields = fields_of(refusal)
    assert fields["mscomm.event"] == "refused" and fields["mscomm.status"] == 401
    assert fields["mscomm.reason"].startswith("verification failed: ")
    assert (fields["mscomm.caller"], fields["mscomm.route"], fields["mscomm.request_id"]) == (
        "orders", "/charge", "req-forged",
    )  # fmt: skip
    (access,) = [r for r in caplog.records if r.name == "mscomm_sync.access.server"]
    assert fields_of(access)["mscomm.status"] == 401 and fields_of(access)["mscomm.caller"] is None
    for record in caplog.records:
        assert SECRET_BODY not in record.getMessage() + json.dumps(fields_of(record), default=str)


def test_a_retry_log_line_carries_its_fields(
    services: Build, caplog: pytest.LogCaptureFixture
) -> None:
    """A retry's INFO line has the target, instance, attempt, reason and request id as fields."""
    fleet = services("orders", "billing")
    hits: list[int] = []

    def flaky(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        hits.append(1)
        start_response("503 Service Unavailable" if len(hits) == 1 else "200 OK", [])
        return [b""]

    url = fleet.serve("billing", flaky)
    with caplog.at_level(logging.INFO, logger="mscomm_sync.client"):
        fleet.client("orders", sleep=lambda s: None).request(
            target_service="billing", endpoint="/x", method="GET",
            headers={"X-Request-Id": "req-retry"},
        )  # fmt: skip
    (retry,) = [r for r in caplog.records if getattr(r, "mscomm.event", None) == "retry"]
    assert {k: v for k, v in fields_of(retry).items() if k != "mscomm.backoff"} == {
        "mscomm.event": "retry", "mscomm.target": "billing", "mscomm.instance": url,
        "mscomm.attempt": 2, "mscomm.reason": "status 503", "mscomm.request_id": "req-retry",
    }  # fmt: skip
