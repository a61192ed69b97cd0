"""Trust roots: a signed trust file verifies against a pinned root, and nothing else does."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.trust import PrivateKey, generate_private_key
from mscomm_sync.trust.document import TrustError, parse
from mscomm_sync.trust.keys import parse_key
from mscomm_sync.trust.signing import (
    generate_root,
    parse_roots,
    root_key_id,
    sign,
    verify,
)

from .conftest import document, key_entry, write


def signed_file(tmp_path: Path, doc: dict[str, Any], private: str) -> Path:
    """Sign ``doc`` with the root ``private`` and write it to a real file."""
    return write(tmp_path / "trust.json", sign(doc, private, source="ROOT"))


def reread(path: Path) -> Any:
    """Parse the file at ``path``."""
    return parse(path.read_bytes())


def test_sign_then_verify(tmp_path: Path, billing: PrivateKey, root: tuple[str, str]) -> None:
    """A document signed by a root verifies against that root, which verify returns."""
    private, public = root
    path = signed_file(tmp_path, document({"billing": [billing]}), private)
    (pinned,) = parse_roots(public)
    assert verify(reread(path), (pinned,)) is pinned
    assert reread(path).signature[0] == pinned.kid


def test_the_root_key_id_is_the_documented_hash(root: tuple[str, str]) -> None:
    """A root key id is the first 16 hex digits of SHA-256 over its label and public key."""
    raw = parse_key(root[1], source="test", what="trust root")
    expected = hashlib.sha256(b"mscomm-sync trust root\x00" + raw).hexdigest()[:16]
    assert root_key_id(raw) == expected
    assert parse_roots(root[1])[0].kid == expected


def swap_billing_key(doc: dict[str, Any]) -> None:
    """Replace billing's key with an attacker's, its id made right."""
    doc["services"]["billing"]["keys"] = [key_entry(generate_private_key())]


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "serial": lambda d: d.update(serial=d["serial"] + 1),
    "swapped-key": swap_billing_key,
    "added-key": lambda d: d["services"]["billing"]["keys"].append(
        key_entry(generate_private_key())
    ),
    "reordered-keys": lambda d: d["services"]["billing"]["keys"].reverse(),
    "callers": lambda d: d["services"]["billing"].update(callers=["mallory"]),
    "new-service": lambda d: d["services"].update(mallory={"keys": []}),
    "not-after": lambda d: d["services"]["billing"]["keys"][0].update(
        not_after="2099-01-01T00:00:00Z"
    ),
    "extra-field": lambda d: d.update(comment="harmless?"),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=list(EDITS))
def test_any_edit_after_signing_fails(
    tmp_path: Path, billing: PrivateKey, root: tuple[str, str], edit: Callable[..., None]
) -> None:
    """Whatever changes after signing, the signature no longer verifies."""
    private, public = root
    doc = document({"billing": [billing, generate_private_key()]}, callers={"billing": ["orders"]})
    signed = sign(doc, private, source="ROOT")
    tampered = copy.deepcopy(signed)
    edit(tampered)
    path = write(tmp_path / "trust.json", tampered)
    with pytest.raises(TrustError, match="does not verify"):
        verify(reread(path), parse_roots(public))


def test_layout_is_not_content(tmp_path: Path, billing: PrivateKey, root: tuple[str, str]) -> None:
    """Re-indenting and reordering a signed file keeps its signature valid."""
    private, public = root
    signed = sign(document({"billing": [billing]}), private, source="ROOT")
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(dict(reversed(list(signed.items()))), indent=7))
    verify(reread(path), parse_roots(public))


def test_an_unpinned_root_fails(tmp_path: Path, billing: PrivateKey, root: tuple[str, str]) -> None:
    """A file signed by a root that is not pinned is refused, naming that root."""
    other_private, _ = generate_root()
    path = signed_file(tmp_path, document({"billing": [billing]}), other_private)
    with pytest.raises(TrustError, match="not pinned") as caught:
        verify(reread(path), parse_roots(root[1]))
    assert reread(path).signature[0] in str(caught.value)


def test_unsigned_with_pinned_roots_fails(
    tmp_path: Path, billing: PrivateKey, root: tuple[str, str]
) -> None:
    """An unsigned file is refused when a root is pinned."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}))
    with pytest.raises(TrustError, match="not signed"):
        verify(reread(path), parse_roots(root[1]))


def test_a_signature_relabelled_with_a_pinned_root_id_fails(
    tmp_path: Path, billing: PrivateKey, root: tuple[str, str]
) -> None:
    """Another root's signature under the pinned root's key id does not verify."""
    other_private, _ = generate_root()
    forged = sign(document({"billing": [billing]}), other_private, source="ROOT")
    forged["signature"]["key_id"] = parse_roots(root[1])[0].kid
    path = write(tmp_path / "trust.json", forged)
    with pytest.raises(TrustError, match="does not verify"):
        verify(reread(path), parse_roots(root[1]))


def test_any_of_several_pinned_roots_verifies(
    tmp_path: Path, billing: PrivateKey, root: tuple[str, str]
) -> None:
    """With old and new roots pinned (a root rotation), a file signed by either verifies."""
    new_private, new_public = generate_root()
    roots = parse_roots(f"{root[1]},{new_public}")
    for private in (root[0], new_private):
        path = signed_file(tmp_path, document({"billing": [billing]}), private)
        assert verify(reread(path), roots).kid == reread(path).signature[0]


def test_signing_replaces_an_old_signature_and_leaves_its_input(
    billing: PrivateKey, root: tuple[str, str]
) -> None:
    """sign() returns a new document; the one given is not changed."""
    first = sign(document({"billing": [billing]}), generate_root()[0], source="ROOT")
    before = copy.deepcopy(first)
    second = sign(first, root[0], source="ROOT")
    assert first == before
    assert second["signature"]["key_id"] == parse_roots(root[1])[0].kid


def test_parse_roots_reads_a_comma_separated_list(root: tuple[str, str]) -> None:
    """MSCOMM_TRUST_ROOT may hold several roots, comma-separated, spaces allowed."""
    other = generate_root()[1]
    kids = [r.kid for r in parse_roots(f" {root[1]} , {other} ,")]
    assert kids == [parse_roots(root[1])[0].kid, parse_roots(other)[0].kid]


@pytest.mark.parametrize("value", ["", " , "])
def test_parse_roots_refuses_an_empty_value(value: str) -> None:
    """A set but empty root variable is an error, not "no root"."""
    with pytest.raises(ConfigurationError, match="MSCOMM_TRUST_ROOT is empty"):
        parse_roots(value)


def test_a_malformed_root_names_its_source_and_how_to_make_one(root: tuple[str, str]) -> None:
    """A root that does not parse names its variable, not its value, and `mscomm trust root`."""
    bad = root[1][:-2]
    with pytest.raises(ConfigurationError) as caught:
        parse_roots(bad)
    assert "MSCOMM_TRUST_ROOT" in str(caught.value)
    assert bad[:12] not in str(caught.value)
    assert "mscomm trust root" in str(caught.value)


def test_a_malformed_root_private_key_names_its_source(billing: PrivateKey) -> None:
    """Signing with a malformed private key names where it came from, never the value."""
    with pytest.raises(ConfigurationError) as caught:
        sign(document({"billing": [billing]}), "secret-but-malformed", source="ROOT_KEY")
    assert "ROOT_KEY" in str(caught.value)
    assert "secret-but-malformed" not in str(caught.value)


def test_the_root_repr_shows_its_key_id(root: tuple[str, str]) -> None:
    """A root's repr names its key id."""
    (pinned,) = parse_roots(root[1])
    assert repr(pinned) == f"<RootKey kid={pinned.kid!r}>"
    assert pinned.text == root[1]


def test_generated_roots_are_fresh_pairs() -> None:
    """Two generated roots differ, and each public key matches its private key."""
    (p1, pub1), (p2, pub2) = generate_root(), generate_root()
    assert p1 != p2 and pub1 != pub2
    signed = sign(document({}), p1, source="ROOT")
    verify(parse(json.dumps(signed).encode()), parse_roots(pub1))
