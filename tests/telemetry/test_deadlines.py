"""Deadlines across hops: a call's remaining time travels sealed, the next hop's handler
sees it, nested calls keep within it, and a request that arrives with it spent is not run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from support.fleet import Fleet
from support.gunicorn import GunicornServer

from mscomm_sync import (
    DeadlineAfterSendingError,
    DeadlineExceededError,
    DeadlineSpentOnArrivalError,
    FileRegistry,
    MicroServiceClient,
    NotDeliveredError,
    current_deadline,
)
from mscomm_sync.envelope import target_from_endpoint
from mscomm_sync.keyring import Keyring
from mscomm_sync.telemetry.context import RequestContext, RequestDeadline, Serving

from .apps import REGISTRY_ENV, REPORT_ENV
from .services import Services

Build = Callable[..., Services]


def read_report(path: Path, who: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first line ``who`` wrote to the report (waiting at most ``timeout`` for it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if row["who"] == who:
                    return row
        time.sleep(0.05)
    raise AssertionError(f"{who} reported nothing in {timeout}s")


def test_a_one_second_call_through_three_services_fails_everywhere_within_it(
    tmp_path: Path,
) -> None:
    """orders calls billing with 1 s; billing would wait 5 s for ledger. Every hop gives up
    within about 1 s (asserted under 4 s), and ledger saw a deadline under 1 s."""
    fleet = Fleet("orders", "billing", "ledger")
    registry_path, report = tmp_path / "registry.json", tmp_path / "report.jsonl"
    common = {REPORT_ENV: str(report), REGISTRY_ENV: str(registry_path)}
    billing_env = fleet.environ("orders", "ledger", private=["billing"])
    billing_env.update(SERVICE_NAME="billing", MSCOMM_CALLERS="orders",
                       MSCOMM_REPLAY_DB=str(tmp_path / "billing.table"), **common)  # fmt: skip
    ledger_env = fleet.environ("billing", private=["ledger"])
    ledger_env.update(SERVICE_NAME="ledger", MSCOMM_CALLERS="billing",
                      MSCOMM_REPLAY_DB=str(tmp_path / "ledger.table"), **common)  # fmt: skip
    registry = FileRegistry(registry_path)
    with (
        GunicornServer("telemetry.apps:last_app()", workers=2, env=ledger_env) as ledger,
        GunicornServer("telemetry.apps:middle_app()", workers=2, env=billing_env) as billing,
    ):
        registry.register("ledger", ledger.url)
        registry.register("billing", billing.url)
        orders = MicroServiceClient(
            "orders", registry=registry, identity=fleet.identity("orders"),
            trust=fleet.trust("billing"), keyring=Keyring.from_mapping({}),
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(DeadlineAfterSendingError):
            orders.request(target_service="billing", endpoint="/pay", method="POST", timeout=1)
        assert time.monotonic() - started < 4.0
        seen_by_ledger = read_report(report, "ledger")
        ledger_done = read_report(report, "ledger done")
        seen_by_billing = read_report(report, "billing")
        orders.close()
    registry.close()
    rows = (seen_by_billing, seen_by_ledger, ledger_done)
    assert 0 < seen_by_ledger["budget"] < 1.0, rows
    assert ledger_done["elapsed"] < 4.0, rows
    assert 0 < seen_by_billing["budget"] <= 1.0, rows
    assert seen_by_billing["outcome"] == "DeadlineAfterSendingError", rows
    assert seen_by_billing["elapsed"] < 4.0, rows


def test_the_handler_sees_the_callers_budget(services: Build) -> None:
    """A call with a 3 s timeout reaches the handler as a deadline of at most 3 s (its
    environ holds the same one), and a call made inside that handler has at most that."""
    fleet = services("orders", "billing")
    seen: dict[str, Any] = {}

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        deadline = current_deadline()
        seen["deadline"], seen["environ"] = deadline, environ.get("mscomm.deadline")
        seen["header"] = environ.get("HTTP_X_MSCOMM_DEADLINE")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    fleet.serve("billing", billing)
    fleet.client("orders").request(
        target_service="billing", endpoint="/x", method="POST", timeout=3
    )
    deadline = seen["deadline"]
    assert isinstance(deadline, RequestDeadline) and deadline is seen["environ"]
    assert 2.0 < deadline.budget <= 3.0
    assert seen["header"] == str(int(deadline.budget * 1000))
    assert current_deadline() is None  # only while the app runs


def test_a_call_inside_a_handler_takes_the_smaller_deadline(services: Build) -> None:
    """Given 0.3 s left of the request being served, a call with its own 10 s fails with
    DeadlineExceededError in well under 10 s."""
    fleet = services("orders", "billing")

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        remaining = current_deadline()
        time.sleep(min(5.0, remaining.remaining() + 1.0) if remaining else 5.0)
        start_response("200 OK", [])
        return [b""]

    fleet.serve("billing", slow)
    client = fleet.client("orders")
    context = RequestContext(deadline=RequestDeadline(at=time.monotonic() + 0.3, budget=0.3))
    started = time.monotonic()
    with Serving(context), pytest.raises(DeadlineExceededError):
        client.request(target_service="billing", endpoint="/x", method="POST", timeout=10)
    assert time.monotonic() - started < 4.0


def test_a_spent_deadline_fails_before_sending(services: Build) -> None:
    """Inside a request whose deadline has passed, a call is not even sent."""
    fleet = services("orders", "billing")
    ran: list[int] = []

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ran.append(1)
        start_response("200 OK", [])
        return [b""]

    fleet.serve("billing", billing)
    context = RequestContext(deadline=RequestDeadline(at=time.monotonic() - 1, budget=1.0))
    with Serving(context), pytest.raises(NotDeliveredError):
        fleet.client("orders").request(target_service="billing", endpoint="/x", method="POST")
    assert ran == []


def sealed_request(fleet: Fleet, budget_ms: str) -> tuple[Any, Any]:
    """orders' envelope and a POST /x it sealed for billing, carrying ``budget_ms``."""
    envelope = fleet.envelope("orders", "billing")
    sealed = envelope.seal_request(
        recipient="billing", method="POST", target=target_from_endpoint("/x", ""),
        body=b"{}", content_type="application/json",
        headers=[("x-mscomm-deadline", budget_ms), ("x-request-id", "spent-1")],
    )  # fmt: skip
    return envelope, sealed


def test_a_request_that_arrives_with_its_deadline_spent_is_not_run(services: Build) -> None:
    """A sealed request granting 0 ms is answered at once with a sealed 504 marked
    X-Mscomm-Deadline-Spent, and the app never runs; 5000 ms runs it."""
    fleet = services("orders", "billing")
    ran: list[int] = []

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ran.append(1)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    url = fleet.serve("billing", billing)
    envelope, sealed = sealed_request(fleet.fleet, "0")
    resp = requests.post(url + "/x", headers=sealed.headers, data=sealed.body, timeout=10)
    assert (resp.status_code, resp.headers["X-Encrypted-Payload"]) == (504, "true")
    assert "X-Mscomm-Deadline-Spent" not in resp.headers  # it travels inside the seal only
    opened = envelope.open_response(
        sender="billing", method="POST", target="/x", status=504,
        reply_to=sealed.message_id, headers=resp.headers, body=resp.content, request=sealed,
    )  # fmt: skip
    assert ("x-mscomm-deadline-spent", "true") in opened.headers
    assert ran == []
    _, fresh = sealed_request(fleet.fleet, "5000")
    ok = requests.post(url + "/x", headers=fresh.headers, data=fresh.body, timeout=10)
    assert ok.status_code == 200 and ran == [1]


def test_the_client_maps_the_spent_answer_to_its_own_error(services: Build) -> None:
    """A sealed 504 marked spent, from the service itself, raises DeadlineSpentOnArrivalError:
    not delivered (nothing ran), and it neither retries nor opens the breaker."""
    fleet = services("orders", "billing")
    billing_envelope = fleet.fleet.envelope("billing", "orders")
    calls: list[int] = []

    def spent(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # What billing's middleware answers for a spent deadline, sealed by billing.
        from mscomm_sync.wsgi.response import DEADLINE_SPENT, sealed_headers

        calls.append(1)
        seal = dict(p.split("=", 1) for p in environ["HTTP_X_MSCOMM_SEAL"].split(";"))
        opened = billing_envelope.open_request(
            method="GET", target="/x",
            headers={"X-Encrypted-Payload": "true", "X-Encryption-Service": "orders",
                     "X-Mscomm-Seal": environ["HTTP_X_MSCOMM_SEAL"]},
            body=environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])),
        )  # fmt: skip
        assert opened.message_id == seal["id"]
        answer = billing_envelope.seal_response(
            recipient="orders", method="GET", target="/x", status=504,
            reply_to=opened.message_id, body=DEADLINE_SPENT.body,
            content_type=DEADLINE_SPENT.content_type,
            headers=[(n.lower(), v) for n, v in DEADLINE_SPENT.headers], request=opened,
        )  # fmt: skip
        headers, body = sealed_headers([], answer, 504, bodiless=False)
        start_response(DEADLINE_SPENT.status, headers)
        return body

    from client.servers import WaitressServer

    with WaitressServer(spent) as server:
        fleet.registry.register("billing", server.url)
        client = fleet.client("orders")
        with pytest.raises(DeadlineSpentOnArrivalError) as raised:
            client.request(target_service="billing", endpoint="/x", method="GET")
        assert isinstance(raised.value, NotDeliveredError)
        assert calls == [1]  # a GET, yet not retried
        assert client.breaker("billing").state == "closed"
        assert client.breaker("billing")._failure_count == 0


def test_an_outer_deadline_header_is_ignored(services: Build) -> None:
    """X-Mscomm-Deadline, traceparent and mscomm.deadline sent outside the seal never reach
    the app: only the sealed context counts."""
    fleet = services("orders", "billing")
    seen: dict[str, Any] = {}

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(
            deadline=current_deadline(),
            keys=sorted(k for k in environ if "DEADLINE" in k or "TRACE" in k or "mscomm.d" in k),
        )
        start_response("200 OK", [])
        return [b""]

    url = fleet.serve("billing", billing, exempt_paths=["/open"])
    requests.get(
        url + "/open", timeout=10,
        headers={"X-Mscomm-Deadline": "1", "mscomm.deadline": "0"},
    )  # fmt: skip
    assert seen["deadline"] is None
    assert "mscomm.deadline" not in seen["keys"]
    _envelope, sealed = sealed_request(fleet.fleet, "7000")
    forged_trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    outer = {**sealed.headers, "X-Mscomm-Deadline": "1", "Traceparent": forged_trace}
    requests.post(url + "/x", headers=outer, data=sealed.body, timeout=10)
    assert seen["deadline"] is not None and 6.0 < seen["deadline"].budget <= 7.0
    assert "HTTP_TRACEPARENT" not in seen["keys"]


def test_v1_carries_no_context(tmp_path: Path) -> None:
    """Between two v1 services nothing of the context travels: not in clear (a man in the
    middle would see it) and not sealed (v1 seals no header); an inherited request id stays
    home, and the handler has no deadline."""
    from client.servers import WaitressServer

    from mscomm_sync.keyring import generate_key
    from mscomm_sync.replay import MemoryReplayStore
    from mscomm_sync.wsgi import EncryptionMiddleware

    keys = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    seen: dict[str, Any] = {}

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(
            deadline=current_deadline(),
            headers={k: v for k, v in environ.items() if k.startswith("HTTP_")},
        )
        start_response("200 OK", [])
        return [b""]

    app = EncryptionMiddleware(
        billing, "billing", keyring=keys, versions=("1",), replay_store=MemoryReplayStore(),
        allowed_callers=["orders"],
    )  # fmt: skip
    registry = FileRegistry(tmp_path / "r.json")
    with WaitressServer(app) as server:
        registry.register("billing", server.url)
        client = MicroServiceClient("orders", registry=registry, keyring=keys)
        context = RequestContext(
            request_id="inherited-id",
            deadline=RequestDeadline(at=time.monotonic() + 30, budget=30.0),
            traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        )
        with Serving(context):
            resp = client.request(target_service="billing", endpoint="/x", method="POST")
        client.close()
    registry.close()
    assert resp.status_code == 200
    assert seen["deadline"] is None
    sent = {k.lower() for k in resp.request.headers}
    assert not sent & {"traceparent", "tracestate", "x-mscomm-deadline", "x-request-id"}
    assert not {"HTTP_TRACEPARENT", "HTTP_X_MSCOMM_DEADLINE", "HTTP_X_REQUEST_ID"} & set(
        seen["headers"]
    )
    assert "inherited-id" not in json.dumps(seen["headers"])
