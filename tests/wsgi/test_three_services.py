"""Three services under real gunicorn: orders calls billing, and ledger is an insider.

ledger holds every key a real ledger would: its own, and whatever it needs to
talk to billing (in v2 every public key; in v1 billing's shared key, since
billing calls it). With v2 every forgery between orders and billing is
refused; with v1 the same test records what ledger can do.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.apps import DELIVERY_LOG_ENV
from support.fleet import Fleet
from support.forge import forge, forge_v2, key_id_v2
from support.gunicorn import GunicornServer

from mscomm_sync import FileRegistry, MicroServiceClient, UnverifiedAnswerError
from mscomm_sync.keyring import Keyring, env_var_name, generate_key
from mscomm_sync.testing import LiveServer


def deliveries(tmp_path: Path) -> list[str]:
    """The statuses billing answered /who with (the delivery log records every request)."""
    log = tmp_path / "deliveries.log"
    rows = [line.split(" ", 2) for line in log.read_text().splitlines()] if log.exists() else []
    return [status for _pid, status, path in rows if path == "/who"]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet("orders", "billing", "ledger")


@pytest.fixture
def billing(fleet: Fleet, tmp_path: Path) -> Iterator[GunicornServer]:
    """billing under gunicorn, speaking v2, with orders (and only orders) as its caller."""
    env = fleet.environ("orders", "ledger", private=["billing"])
    env.update(
        SERVICE_NAME="billing",
        MSCOMM_CALLERS="orders",
        MSCOMM_REPLAY_DB=str(tmp_path / "replay.table"),
        **{DELIVERY_LOG_ENV: str(tmp_path / "deliveries.log")},
    )
    with GunicornServer("support.apps:replay_app()", workers=2, env=env) as server:
        yield server


def post(url: str, forged: Any) -> int:
    return requests.post(
        url + "/who", headers=forged.headers, data=forged.body, timeout=30
    ).status_code


def test_ledger_cannot_send_billing_a_request_as_orders(
    fleet: Fleet, billing: GunicornServer, tmp_path: Path
) -> None:
    """ledger, claiming to be orders (with orders' key id or its own), gets 401; the app
    never runs."""
    for claimed_kid in (key_id_v2(fleet.public("orders")), None):
        forged = forge_v2(
            private=fleet.private("ledger"), peer_public=fleet.public("billing"),
            sender="orders", recipient="billing", method="POST", target="/who",
            sender_kid=claimed_kid,
        )  # fmt: skip
        assert post(billing.url, forged) == 401
    assert "200" not in deliveries(tmp_path)


def test_ledger_as_itself_is_not_a_caller(fleet: Fleet, billing: GunicornServer) -> None:
    """A request ledger really sealed verifies, but ledger is not a caller: 403. billing
    holding ledger's public key (to call it) never makes ledger a caller."""
    honest = forge_v2(
        private=fleet.private("ledger"), peer_public=fleet.public("billing"), sender="ledger",
        recipient="billing", method="POST", target="/who",
    )  # fmt: skip
    assert post(billing.url, honest) == 403


def test_a_captured_request_is_not_replayed(fleet: Fleet, billing: GunicornServer) -> None:
    """orders' own request runs once; the same bytes again get 401."""
    real = forge_v2(
        private=fleet.private("orders"), peer_public=fleet.public("billing"), sender="orders",
        recipient="billing", method="POST", target="/who",
    )  # fmt: skip
    assert post(billing.url, real) == 200
    assert post(billing.url, real) == 401


class Impostor:
    """A server ledger runs in billing's place (the registry pointed orders at it).

    It answers every request with a reply it seals itself, as billing, for that request.
    """

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seal = dict(part.split("=", 1) for part in environ["HTTP_X_MSCOMM_SEAL"].split(";"))
        forged = self.answer(seal)
        start_response("200 OK", list(forged.headers.items()))
        return [forged.body]


def call_through(url: str, tmp_path: Path, **client: Any) -> Any:
    registry = FileRegistry(tmp_path / "impostor.json")
    registry.register("billing", url)
    try:
        with MicroServiceClient("orders", registry=registry, **client) as orders:
            return orders.request(target_service="billing", endpoint="/who", method="POST")
    finally:
        registry.close()


def test_ledger_cannot_forge_billings_reply_in_v2(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """orders refuses a reply ledger sealed as billing, for orders' very request and with
    billing's key id claimed; orders' own log says why, at WARNING, with the reason as a
    field (the side that knows says so)."""

    def as_billing(seal: dict[str, str]) -> Any:
        return forge_v2(
            private=fleet.private("ledger"), peer_public=fleet.public("orders"),
            sender="billing", recipient="orders", method="POST", target="/who",
            body=b'{"caller": "orders"}', direction="response", status="200",
            reply_to=seal["id"], sender_kid=seal["rkid"], recipient_kid=seal["skid"],
        )  # fmt: skip

    caplog.set_level(logging.WARNING, "mscomm_sync.client")
    with LiveServer(Impostor(as_billing)) as impostor, pytest.raises(UnverifiedAnswerError):
        call_through(
            impostor.url, tmp_path, identity=fleet.identity("orders"),
            trust=fleet.trust("billing"), keyring=Keyring.from_mapping({}),
        )  # fmt: skip
    refused = [r for r in caplog.records if vars(r).get("mscomm.event") == "answer refused"]
    assert refused and refused[0].levelno == logging.WARNING
    assert vars(refused[0])["mscomm.reason"] == "bad tag"
    assert vars(refused[0])["mscomm.target"] == "billing"


def test_a_request_reflected_as_its_own_reply_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    """An impostor that sends orders' request back as the reply: refused."""

    class Reflector:
        def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            headers = [
                ("X-Encrypted-Payload", "true"), ("X-Encryption-Service", "billing"),
                ("X-Mscomm-Seal", environ["HTTP_X_MSCOMM_SEAL"]),
            ]  # fmt: skip
            start_response("200 OK", headers)
            return [body]

    with LiveServer(Reflector()) as impostor, pytest.raises(UnverifiedAnswerError):
        call_through(
            impostor.url, tmp_path, identity=fleet.identity("orders"),
            trust=fleet.trust("billing"), keyring=Keyring.from_mapping({}),
        )  # fmt: skip


def test_in_v1_ledger_forges_billings_reply(tmp_path: Path) -> None:
    """The same impostor under v1, holding billing's shared key as billing's callee must:
    orders accepts the forged reply. This is the hole v2 closes."""
    keys = {name: generate_key() for name in ("orders", "billing", "ledger")}
    billing_secret = base64.urlsafe_b64decode(keys["billing"] + "=")

    def as_billing(seal: dict[str, str]) -> Any:
        return forge(
            secret=billing_secret, sender="billing", recipient="orders", method="POST",
            target="/who", body=b'{"forged": true}', direction="response", status="200",
            reply_to=seal["id"],
        )  # fmt: skip

    with LiveServer(Impostor(as_billing)) as impostor:
        ring = Keyring.from_mapping({"orders": keys["orders"], "billing": keys["billing"]})
        resp = call_through(impostor.url, tmp_path, keyring=ring)
    assert json.loads(resp.content) == {"forged": True}


def test_in_v1_no_one_without_orders_key_speaks_as_orders(tmp_path: Path) -> None:
    """Under v1 too, ledger (without orders' key) cannot seal a request billing accepts as
    orders': each request is sealed under its sender's own key."""
    keys = {name: generate_key() for name in ("orders", "billing", "ledger")}
    env = {env_var_name(n): k for n, k in keys.items()}
    env.update(SERVICE_NAME="billing", MSCOMM_CALLERS="orders",
               MSCOMM_REPLAY_DB=str(tmp_path / "replay.table"))  # fmt: skip
    forged = forge(
        secret=base64.urlsafe_b64decode(keys["ledger"] + "="), sender="orders",
        recipient="billing", method="POST", target="/who",
    )  # fmt: skip
    with GunicornServer("support.apps:replay_app()", workers=1, env=env) as server:
        assert post(server.url, forged) == 401


def test_in_v1_a_caller_of_billing_speaks_as_billing_but_replays_are_refused(
    tmp_path: Path,
) -> None:
    """v1, recorded: orders must hold billing's shared key (to open billing's replies), so
    it can seal a request as billing to ledger, which accepts billing: ledger runs it as
    billing. This is the other hole v2 closes. A replay of it is refused all the same."""
    keys = {name: generate_key() for name in ("orders", "billing", "ledger")}
    env = {env_var_name(n): k for n, k in keys.items() if n != "orders"}
    env.update(SERVICE_NAME="ledger", MSCOMM_CALLERS="billing",
               MSCOMM_REPLAY_DB=str(tmp_path / "replay.table"))  # fmt: skip
    with GunicornServer("support.apps:replay_app()", workers=2, env=env) as ledger:
        as_billing = forge(
            secret=base64.urlsafe_b64decode(keys["billing"] + "="), sender="billing",
            recipient="ledger", method="POST", target="/who",
        )  # fmt: skip
        assert post(ledger.url, as_billing) == 200  # accepted: made by orders, as billing
        assert post(ledger.url, as_billing) == 401  # the same bytes again: a replay


def test_in_v1_a_request_reflected_as_its_own_reply_is_refused(tmp_path: Path) -> None:
    """v1 binds the direction too: orders' request sent back as billing's reply is refused."""
    keys = {name: generate_key() for name in ("orders", "billing")}

    class Reflector:
        def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [
                ("X-Encrypted-Payload", "true"), ("X-Encryption-Service", "billing"),
                ("X-Mscomm-Seal", environ["HTTP_X_MSCOMM_SEAL"]),
            ])  # fmt: skip
            return [body]

    ring = Keyring.from_mapping(keys)
    with LiveServer(Reflector()) as impostor, pytest.raises(UnverifiedAnswerError):
        call_through(impostor.url, tmp_path, keyring=ring)
