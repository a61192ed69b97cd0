"""KeyFactory's protocol v2 API: key pairs, identities, trust stores, environments, trust files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from support.gunicorn import GunicornServer

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.envelope import Envelope
from mscomm_sync.errors import ConfigurationError, RequestRejectedError
from mscomm_sync.keyring import Keyring
from mscomm_sync.registry import FileRegistry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import KeyFactory
from mscomm_sync.trust import Identity, PrivateKey, TrustStore
from mscomm_sync.trust.signing import generate_root, parse_roots


def exported() -> tuple[KeyFactory, dict[str, str]]:
    """A factory that exports into a dict of its own, never into os.environ."""
    env: dict[str, str] = {}
    return KeyFactory(setenv=env.__setitem__), env


def sealed_version(keys: KeyFactory, sender: str, recipient: str) -> tuple[str, str]:
    """Seal sender -> recipient with envelopes built from the factory; return (version, sender)."""
    sealing = Envelope(sender, keyring=keys.keyring(), identity=keys.identity(sender),
                       trust=keys.trust(recipient))  # fmt: skip
    opening = Envelope(recipient, keyring=keys.keyring(), identity=keys.identity(recipient),
                       trust=keys.trust(sender), replay_store=MemoryReplayStore())  # fmt: skip
    sealed = sealing.seal_request(recipient=recipient, method="POST", target="/x", body=b"hi")
    opened = opening.open_request(
        method="POST", target="/x", headers=sealed.headers, body=sealed.body
    )
    assert opened.body == b"hi"
    return opened.version, opened.sender


def test_a_name_gets_a_key_pair_and_a_shared_key() -> None:
    """By default each name gets a v2 pair (private and public variables) and a v1 key."""
    keys, env = exported()
    ring = keys("orders", "billing-v2")
    assert isinstance(ring, Keyring)
    private = PrivateKey.from_text(env["ORDERS_PRIVATE_KEY"], source="test")
    assert env["ORDERS_PUBLIC_KEY"] == private.public.text == keys.public_key("orders").text
    assert keys.private_key("orders").kid == private.kid
    assert env["BILLING_V2_ENCRYPTION_KEY"] == keys.key("billing-v2")
    assert ring.keys_for("orders").sealing.kid == keys.keyring().keys_for("orders").sealing.kid
    assert env["ORDERS_PRIVATE_KEY"] != env["BILLING_V2_PRIVATE_KEY"]


def test_asking_again_keeps_every_key() -> None:
    """A name asked for twice keeps its pair and its shared key; no variable is set again."""
    calls: list[str] = []
    env: dict[str, str] = {}

    def setenv(name: str, value: str) -> None:
        calls.append(name)
        env[name] = value

    keys = KeyFactory(setenv=setenv)
    keys("orders")
    before = dict(env)
    keys("orders", "billing")
    keys.identity("orders")
    assert {k: env[k] for k in before} == before
    assert sorted(calls) == sorted(set(calls))
    assert keys.names == ["billing", "orders"]


def test_two_services_of_a_factory_seal_v2_between_them() -> None:
    """Envelopes built from the factory's identities and trust stores seal and open v2."""
    keys, _env = exported()
    assert sealed_version(keys, "orders", "billing") == ("2", "orders")


def test_the_identity_holds_the_private_key_and_is_never_pickled() -> None:
    """identity(name) holds that service's private key itself, and refuses to be pickled."""
    keys, env = exported()
    identity = keys.identity("orders")
    assert identity.current.kid == keys.private_key("orders").kid
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(identity)
    assert env["ORDERS_PRIVATE_KEY"][:12] not in repr(identity)


def test_trust_knows_the_peers_named_and_no_other() -> None:
    """trust(peer) knows that peer's public key only; trust() knows every service so far."""
    keys, _env = exported()
    keys("orders", "billing", "ledger")
    only_billing = keys.trust("billing")
    assert only_billing.sealing_key("billing").kid == keys.public_key("billing").kid
    assert only_billing.sealing_key("ledger") is None
    assert {n for n in keys.names if keys.trust().sealing_key(n)} == set(keys.names)
    with pytest.raises(TypeError, match="mapping of its own"):
        pickle.dumps(only_billing)


def test_a_v2_only_factory_makes_no_shared_keys() -> None:
    """versions=("2",) exports pairs only; the v1 accessors say so instead of inventing keys."""
    env: dict[str, str] = {}
    keys = KeyFactory(setenv=env.__setitem__, versions=("2",))
    ring = keys("orders")
    assert sorted(env) == ["ORDERS_PRIVATE_KEY", "ORDERS_PUBLIC_KEY"]
    with pytest.raises(ConfigurationError, match="no protocol v1 keys"):
        keys.key("orders")
    with pytest.raises(ConfigurationError):
        ring.keys_for("orders")
    assert sealed_version(keys, "orders", "billing") == ("2", "orders")


def test_a_v1_only_factory_is_the_old_factory() -> None:
    """versions=("1",) exports <NAME>_ENCRYPTION_KEY only, and the v2 accessors refuse."""
    env: dict[str, str] = {}
    keys = KeyFactory(setenv=env.__setitem__, versions=("1",))
    keys("orders", "billing")
    assert sorted(env) == ["BILLING_ENCRYPTION_KEY", "ORDERS_ENCRYPTION_KEY"]
    with pytest.raises(ConfigurationError, match="no protocol v2 keys"):
        keys.identity("orders")
    sealing = Envelope("orders", keyring=keys.keyring(), identity=Identity("orders", environ={}),
                       trust=TrustStore(environ={}))  # fmt: skip
    sealed = sealing.seal_request(recipient="billing", method="GET", target="/")
    assert sealed.version == "1"


@pytest.mark.parametrize("versions", [(), ("3",), ("1", "v2")])
def test_unknown_versions_are_refused(versions: tuple[str, ...]) -> None:
    """A factory for no version, or for one that does not exist, is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        KeyFactory(setenv=lambda name, value: None, versions=versions)


def test_an_invalid_name_is_refused_before_any_key_is_made() -> None:
    """A name not in canonical form raises, and exports nothing for it."""
    keys, env = exported()
    with pytest.raises(ConfigurationError):
        keys("Orders")
    assert env == {}


def test_environ_is_what_one_process_of_the_fleet_holds() -> None:
    """environ(name) holds its own private key only, its peers' public keys, both shared
    keys, the service name, and MSCOMM_CALLERS / MSCOMM_TRUST when asked for."""
    keys, env = exported()
    keys("orders", "billing", "ledger")
    got = keys.environ("billing", peers=["orders"], callers=["orders"], trust_file="/t.json")
    assert got == {
        "SERVICE_NAME": "billing",
        "BILLING_PRIVATE_KEY": env["BILLING_PRIVATE_KEY"],
        "ORDERS_PUBLIC_KEY": env["ORDERS_PUBLIC_KEY"],
        "BILLING_ENCRYPTION_KEY": env["BILLING_ENCRYPTION_KEY"],
        "ORDERS_ENCRYPTION_KEY": env["ORDERS_ENCRYPTION_KEY"],
        "MSCOMM_CALLERS": "orders",
        "MSCOMM_TRUST": "/t.json",
    }
    every_peer = keys.environ("billing")
    assert "LEDGER_PUBLIC_KEY" in every_peer and "ORDERS_PRIVATE_KEY" not in every_peer
    assert "MSCOMM_CALLERS" not in every_peer


def test_a_trust_file_lists_public_keys_and_callers(tmp_path: Path) -> None:
    """write_trust_file writes a document a TrustStore reads: every service's public key, and
    callers only where given; no private key is in it."""
    keys, env = exported()
    path = keys.write_trust_file(
        tmp_path / "trust.json", services=["billing"], callers={"billing": ["orders"]}
    )
    trust = TrustStore(path, environ={})
    assert trust.sealing_key("billing").kid == keys.public_key("billing").kid
    assert trust.sealing_key("orders").kid == keys.public_key("orders").kid  # a caller is listed
    assert trust.callers("billing") == frozenset({"orders"})
    assert trust.callers("orders") is None
    text = path.read_text()
    assert not any(env[v] in text for v in env if v.endswith(("_PRIVATE_KEY", "_ENCRYPTION_KEY")))


def test_a_signed_trust_file_verifies_against_its_root(tmp_path: Path) -> None:
    """A file signed with root_key= is accepted with that root pinned, refused with another."""
    keys, _env = exported()
    private, public = generate_root()
    path = keys.write_trust_file(tmp_path / "trust.json", services=["billing"], root_key=private)
    pinned = TrustStore(path, roots=parse_roots(public), environ={})
    assert pinned.sealing_key("billing") is not None
    with pytest.raises(ConfigurationError, match="not pinned"):
        TrustStore(path, roots=parse_roots(generate_root()[1]), environ={})


def test_the_fleet_file_follows_every_new_name(tmp_path: Path) -> None:
    """A store from fleet_trust() learns, with no wait, of services made after it: their keys,
    and that every service of the factory may call every other."""
    env: dict[str, str] = {}
    keys = KeyFactory(setenv=env.__setitem__, fleet_file=tmp_path / "fleet.json")
    keys("billing")
    trust = keys.fleet_trust()
    assert trust.callers("billing") == frozenset({"billing"})
    keys("orders")
    assert trust.callers("billing") == frozenset({"billing", "orders"})
    assert trust.sealing_key("orders").kid == keys.public_key("orders").kid
    document = json.loads((tmp_path / "fleet.json").read_text())
    assert sorted(document["services"]) == ["billing", "orders"]
    assert keys.fleet_file == tmp_path / "fleet.json"


def test_without_a_fleet_file_fleet_trust_says_so() -> None:
    """fleet_trust() on a factory that keeps no fleet file raises a ConfigurationError."""
    keys, _env = exported()
    with pytest.raises(ConfigurationError, match="fleet_file"):
        keys.fleet_trust()


def test_the_repr_names_services_not_keys() -> None:
    """The repr lists names and versions, and no part of a key."""
    keys, env = exported()
    keys("orders")
    assert repr(keys) == "<KeyFactory names=['orders'] versions='1,2'>"
    assert not any(value[:12] in repr(keys) for value in env.values())


@pytest.mark.parametrize("source", ["variables", "signed trust file"])
def test_environ_starts_a_real_gunicorn_service(tmp_path: Path, source: str) -> None:
    """A gunicorn service given only environ(...) (or environ(...) and a signed trust file)
    answers its caller sealed with v2, and refuses a service that is not its caller."""
    keys = KeyFactory(setenv=lambda name, value: None, versions=("2",))  # nothing in os.environ
    keys("orders", "billing", "shipping")
    if source == "variables":
        env = keys.environ("billing", peers=["orders", "shipping"], callers=["orders"])
    else:
        private, public = generate_root()
        trust = keys.write_trust_file(
            tmp_path / "trust.json", callers={"billing": ["orders"]}, root_key=private
        )
        env = {**keys.environ("billing", peers=[], trust_file=trust), "MSCOMM_TRUST_ROOT": public}
    env["MSCOMM_REPLAY_DB"] = str(tmp_path / "replay.table")
    with (
        FileRegistry(tmp_path / "registry.json") as registry,
        GunicornServer("support.apps:replay_app()", workers=1, env=env) as server,
    ):
        registry.register("billing", server.url)
        clients = {
            name: MicroServiceClient(
                name, registry=registry, identity=keys.identity(name), trust=keys.trust("billing")
            )
            for name in ("orders", "shipping")
        }
        try:
            answer = clients["orders"].request(target_service="billing", endpoint="/who")
            assert answer.status_code == 200 and answer.json()["caller"] == "orders"
            with pytest.raises(RequestRejectedError) as refused:
                clients["shipping"].request(target_service="billing", endpoint="/who")
            assert refused.value.status == 403
        finally:
            for client in clients.values():
                client.close()
    assert "BILLING_PRIVATE_KEY" not in os.environ
