"""Clients with protocol v2's trust and identity pickle and copy without key material."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.registry import FileRegistry
from mscomm_sync.testing import KeyFactory, SealedService
from mscomm_sync.trust import Identity, TrustStore, generate_private_key
from mscomm_sync.trust.signing import generate_root, parse_roots

from .conftest import document, write

ROOT = Path(__file__).resolve().parents[2]


def who(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Say who called, with which protocol version."""
    body = json.dumps({"caller": environ["mscomm.caller"], "protocol": environ["mscomm.protocol"]})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> KeyFactory:
    """v2 key pairs for orders and billing, exported to this test's environment."""
    factory = KeyFactory(setenv=monkeypatch.setenv, versions=("2",))
    factory("orders", "billing")
    monkeypatch.delenv("MSCOMM_TRUST", raising=False)
    monkeypatch.delenv("MSCOMM_TRUST_ROOT", raising=False)
    return factory


@pytest.fixture
def registry(tmp_path: Path, keys: KeyFactory) -> Iterator[FileRegistry]:
    """A real file registry where billing, a real sealed service on 127.0.0.1, is found."""
    with FileRegistry(tmp_path / "registry.json") as reg:
        identity, trust = keys.identity("billing"), keys.trust("orders")
        service = SealedService("billing", who, registry=reg, allowed_callers=["orders"],
                                identity=identity, trust=trust)  # fmt: skip
        with service:
            yield reg


def secrets_of(keys: KeyFactory) -> list[bytes]:
    """Every form of every key the factory made: private and public, text and raw."""
    found: list[bytes] = []
    for name in keys.names:
        private = keys.private_key(name)
        texts = (private.text(), private.public.text)
        found += [t.encode() for t in texts]
        found += [base64.urlsafe_b64decode(t + "=") for t in texts]
    return found


def call(client: MicroServiceClient) -> dict[str, str]:
    """Call billing's /who and return what it says."""
    answer = client.request(target_service="billing", endpoint="/who")
    assert answer.status_code == 200
    result: dict[str, str] = answer.json()
    return result


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_client_with_trust_and_identity_from_the_environment_copies_and_pickles(
    keys: KeyFactory, registry: FileRegistry, how: str
) -> None:
    """copy, deepcopy and pickle of a client given trust=TrustStore() and identity=Identity()
    give a client that calls billing with v2; the pickle holds no key, and copies share both."""
    client = MicroServiceClient("orders", registry=registry, trust=TrustStore(),
                                identity=Identity("orders"))  # fmt: skip
    assert call(client) == {"caller": "orders", "protocol": "2"}  # keys read before the copy
    if how == "pickle":
        data = pickle.dumps(client)
        assert not [s for s in secrets_of(keys) if s in data]
        other = pickle.loads(data)  # noqa: S301 - our own bytes
        assert other._trust is not client._trust
    else:
        other = getattr(copy, how)(client)
        assert other._trust is client._trust and other._identity is client._identity
    assert call(other) == {"caller": "orders", "protocol": "2"}


def test_an_unpickled_store_reads_the_environment_again(
    keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a store read is not in its pickle: the copy reads <NAME>_PUBLIC_KEY itself."""
    store = TrustStore()
    assert store.sealing_key("billing").kid == keys.public_key("billing").kid
    data = pickle.dumps(store)
    rotated = generate_private_key()
    monkeypatch.setenv("BILLING_PUBLIC_KEY", rotated.public.text)
    assert pickle.loads(data).sealing_key("billing").kid == rotated.kid  # noqa: S301
    assert store.sealing_key("billing").kid == keys.public_key("billing").kid  # cached


def test_a_store_of_a_given_trust_file_pickles_as_its_path(
    keys: KeyFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store given a path comes back reading that file (not $MSCOMM_TRUST); one that took
    its file from $MSCOMM_TRUST reads the variable again."""
    given = keys.write_trust_file(tmp_path / "given.json", services=["billing"])
    other_key = generate_private_key()
    other = write(tmp_path / "other.json", document({"billing": [other_key]}))
    monkeypatch.setenv("MSCOMM_TRUST", str(given))
    explicit, from_env = TrustStore(given), TrustStore()
    explicit_data, env_data = pickle.dumps(explicit), pickle.dumps(from_env)
    assert str(given).encode() in explicit_data
    assert not [s for s in secrets_of(keys) if s in explicit_data + env_data]
    monkeypatch.setenv("MSCOMM_TRUST", str(other))
    assert pickle.loads(explicit_data).sealing_key("billing").kid == keys.public_key("billing").kid  # noqa: S301
    assert pickle.loads(env_data).sealing_key("billing").kid == other_key.kid  # noqa: S301


def test_given_roots_stay_pinned_in_the_copy(
    keys: KeyFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Roots given to the store travel with it (public keys, and the pin must not change);
    roots it read from $MSCOMM_TRUST_ROOT are read again."""
    private, public = generate_root()
    path = keys.write_trust_file(tmp_path / "trust.json", root_key=private)
    pinned = pickle.dumps(TrustStore(path, roots=parse_roots(public)))
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", generate_root()[1])  # would refuse this file
    copy_of = pickle.loads(pinned)  # noqa: S301 - our own bytes
    assert [r.kid for r in copy_of.roots] == [r.kid for r in parse_roots(public)]
    assert copy_of.sealing_key("billing") is not None
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", public)
    from_env = pickle.dumps(TrustStore(path))
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", generate_root()[1])
    with pytest.raises(ConfigurationError, match="not pinned"):
        pickle.loads(from_env)  # noqa: S301 - our own bytes


def test_a_store_of_its_own_mapping_refuses_to_pickle(
    keys: KeyFactory, registry: FileRegistry
) -> None:
    """A store built from an explicit mapping raises TypeError, alone or inside a client, rather
    than put its keys in a pickle; copies of the client share it and still call billing."""
    trust = TrustStore(environ={"BILLING_PUBLIC_KEY": keys.public_key("billing").text})
    with pytest.raises(TypeError, match="mapping of its own"):
        pickle.dumps(trust)
    client = MicroServiceClient("orders", registry=registry, trust=trust)
    with pytest.raises(TypeError, match="mapping of its own"):
        pickle.dumps(client)
    other = copy.deepcopy(client)
    assert other._trust is trust
    assert call(other)["protocol"] == "2"


def test_an_identity_given_its_keys_refuses_to_pickle(
    keys: KeyFactory, registry: FileRegistry
) -> None:
    """A client whose Identity holds its private key refuses to be pickled; copies share it."""
    client = MicroServiceClient("orders", registry=registry, identity=keys.identity("orders"))
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(client)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(Identity("orders", environ={"ORDERS_PRIVATE_KEY": "x" * 43}))
    assert copy.copy(client)._identity is client._identity
    assert call(copy.deepcopy(client))["caller"] == "orders"


def test_copies_of_a_store_are_the_store(keys: KeyFactory) -> None:
    """copy and deepcopy of a TrustStore return it: what it read is never duplicated."""
    store = TrustStore()
    assert copy.copy(store) is store and copy.deepcopy(store) is store


def test_an_unpickled_client_calls_from_another_process(
    keys: KeyFactory, registry: FileRegistry
) -> None:
    """A pickled client, loaded in a new interpreter, reads its keys from that process's
    environment and calls billing with v2."""
    client = MicroServiceClient("orders", registry=registry, trust=TrustStore(),
                                identity=Identity("orders"))  # fmt: skip
    child = (
        "import json, pickle, sys\n"
        "client = pickle.load(sys.stdin.buffer)\n"
        "answer = client.request(target_service='billing', endpoint='/who')\n"
        "print(json.dumps([answer.status_code, answer.json()]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps(client),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert json.loads(done.stdout) == [200, {"caller": "orders", "protocol": "2"}]
