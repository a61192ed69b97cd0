"""A caller is seen under exactly one name: aliases of a name are refused, never let through.

Keys are looked up by environment variable, and ``ORDERS``, ``Orders`` and
``orders`` (or ``billing-v2``, ``billing_v2`` and ``billing.v2``) once all
read one variable. The attacks below seal with the right key under an alias,
using an attacker's own sealer, not the package's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from support.forge import forge

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.keyring import Keyring, env_var_name, generate_key, validate_service_name
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware

SECRETS = {"orders": bytes(range(32)), "billing-v2": bytes(range(32, 64))}


def caller_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the verified caller the app sees."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"caller": environ.get("mscomm.caller")}).encode()]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """billing, reading every key from an environment, as deployments do."""
    import base64

    def text(secret: bytes) -> str:
        return base64.urlsafe_b64encode(secret).rstrip(b"=").decode()

    environ = {env_var_name(name): text(secret) for name, secret in SECRETS.items()}
    environ[env_var_name("billing")] = generate_key()
    middleware = EncryptionMiddleware(
        caller_app,
        "billing",
        keyring=Keyring(environ=environ),
        replay_store=MemoryReplayStore(),
    )
    with LiveServer(middleware) as live:
        yield live


def deliver(server: LiveServer, name: str, secret: bytes) -> requests.Response:
    """Send billing a request sealed with ``secret`` under the sender name ``name``."""
    sealed = forge(secret=secret, sender=name, recipient="billing", method="GET", target="/who")
    return requests.get(server.url + "/who", headers=sealed.headers, data=sealed.body, timeout=30)


@pytest.mark.parametrize(("alias", "owner"), [
    ("ORDERS", "orders"),
    ("Orders", "orders"),
    ("oRdErS", "orders"),
    ("billing_v2", "billing-v2"),
    ("billing.v2", "billing-v2"),
    ("Billing-V2", "billing-v2"),
    ("BILLING.V2", "billing-v2"),
])  # fmt: skip
def test_an_alias_sealed_with_the_right_key_is_refused(
    server: LiveServer, alias: str, owner: str
) -> None:
    """A request sealed with a caller's own key under an alias of its name gets 401."""
    assert deliver(server, alias, SECRETS[owner]).status_code == 401


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_the_canonical_name_with_its_key_is_accepted(server: LiveServer, name: str) -> None:
    """The same forger, with the canonical name, is accepted: the refusals above are the names'."""
    resp = deliver(server, name, SECRETS[name])
    assert resp.status_code == 200
    assert resp.headers["X-Encryption-Service"] == "billing"


@pytest.mark.parametrize(
    "name", ["ORDERS", "Orders", "billing_v2", "billing.v2", "-orders", "orders-", "", "a" * 129]
)
def test_non_canonical_names_are_refused_when_configured(name: str) -> None:
    """A non-canonical name is a ConfigurationError at start-up, wherever it is configured."""
    with pytest.raises(ConfigurationError):
        validate_service_name(name)
    with pytest.raises(ConfigurationError):
        EncryptionMiddleware(caller_app, name, keyring=Keyring.from_mapping({}))
    with pytest.raises(ConfigurationError):
        Keyring.from_mapping({name: generate_key()})


canonical = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)


@given(canonical, canonical)
def test_each_name_reads_its_own_variable(one: str, other: str) -> None:
    """Two different canonical names never read the same environment variable."""
    assert validate_service_name(one) == one
    assert (env_var_name(one) == env_var_name(other)) == (one == other)


@pytest.mark.parametrize("holder", ["field", "ledger"])
def test_holding_a_v1_key_does_not_make_its_service_a_caller(
    holder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1: billing's environment holds FIELD_ENCRYPTION_KEY (a Fernet key for a database
    field, say) and LEDGER_ENCRYPTION_KEY (to open the replies of ledger, which billing
    calls). Neither makes field or ledger a caller: with no allowed_callers, trust-file
    callers or MSCOMM_CALLERS, a request they seal verifies and is refused with 403."""
    from support.sealing import prepare

    monkeypatch.delenv("MSCOMM_CALLERS", raising=False)
    keys = {"billing": generate_key(), "field": generate_key(), "ledger": generate_key()}
    environ = {env_var_name(name): key for name, key in keys.items()}
    app = EncryptionMiddleware(
        caller_app, "billing", keyring=Keyring(environ), replay_store=MemoryReplayStore(),
        versions={"1"},
    )  # fmt: skip
    with LiveServer(app) as live:
        prepared, _, _ = prepare(
            live.url + "/who", sender=holder, ring=Keyring.from_mapping(keys), body=b"{}"
        )
        with requests.Session() as session:
            answer = session.send(prepared, timeout=30)
    assert answer.status_code == 403
