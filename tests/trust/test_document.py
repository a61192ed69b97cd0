"""The trust file's format: every validation rule, read from real files, and canonical bytes."""

from __future__ import annotations

import calendar
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from mscomm_sync.trust import PrivateKey, generate_private_key
from mscomm_sync.trust.document import TrustError, canonical_bytes, format_time, parse

from .conftest import document, key_entry, write


def read(tmp_path: Path, doc: Any) -> Any:
    """Write ``doc`` to a real file and parse what is read back."""
    return parse(write(tmp_path / "trust.json", doc).read_bytes())


def refused(tmp_path: Path, doc: Any) -> str:
    """Write ``doc``, parse it, and return the reason it was refused."""
    with pytest.raises(TrustError) as caught:
        read(tmp_path, doc)
    return str(caught.value)


def edited(billing: PrivateKey, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A valid document listing billing, changed by ``change``."""
    doc = document({"billing": [billing]})
    change(doc)
    return doc


def test_a_valid_document_is_read(tmp_path: Path, billing: PrivateKey, orders: PrivateKey) -> None:
    """serial, services, keys in order and callers are read as written."""
    second = generate_private_key()
    doc = document({"billing": [billing, second], "orders": [orders]}, serial=7)
    doc["services"]["billing"]["callers"] = ["orders", "ledger"]
    parsed = read(tmp_path, doc)
    assert parsed.serial == 7
    assert [k.kid for k in parsed.services["billing"].keys] == [billing.kid, second.kid]
    assert parsed.services["billing"].callers == frozenset({"orders", "ledger"})
    assert parsed.services["orders"].callers is None
    assert parsed.signature is None
    assert parsed.raw == doc


def test_an_empty_document_is_valid(tmp_path: Path) -> None:
    """A document with no services (what `trust init` writes) parses."""
    parsed = read(tmp_path, {"format": "mscomm-trust", "version": 1, "serial": 0, "services": {}})
    assert parsed.services == {}


def test_serial_defaults_to_zero(tmp_path: Path) -> None:
    """A document without 'serial' has serial 0."""
    assert read(tmp_path, {"format": "mscomm-trust", "version": 1, "services": {}}).serial == 0


def test_not_json_is_refused(tmp_path: Path) -> None:
    """Bytes that are not JSON are refused as such."""
    (tmp_path / "trust.json").write_text('{"format": ')
    with pytest.raises(TrustError, match="not valid JSON"):
        parse((tmp_path / "trust.json").read_bytes())


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are refused."""
    (tmp_path / "trust.json").write_bytes(b'{"format": "\xff"}')
    with pytest.raises(TrustError, match="not valid JSON"):
        parse((tmp_path / "trust.json").read_bytes())


@pytest.mark.parametrize("doc", [[], "mscomm-trust", {"version": 1, "services": {}}])
def test_a_document_needs_the_format_marker(tmp_path: Path, doc: Any) -> None:
    """Only a JSON object with format 'mscomm-trust' is a trust document."""
    assert "not a trust document" in refused(tmp_path, doc)


def test_another_format_is_refused(tmp_path: Path, billing: PrivateKey) -> None:
    """A 'format' other than mscomm-trust is refused."""
    doc = edited(billing, lambda d: d.update(format="mscomm-registry"))
    assert "not a trust document" in refused(tmp_path, doc)


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_only_version_1_is_read(tmp_path: Path, billing: PrivateKey, version: Any) -> None:
    """'version' must be the integer 1 (not true, not "1")."""
    doc = edited(billing, lambda d: d.update(version=version))
    assert "unsupported trust document version" in refused(tmp_path, doc)


@pytest.mark.parametrize("serial", [-1, "3", True, None])
def test_serial_must_be_a_whole_number(tmp_path: Path, billing: PrivateKey, serial: Any) -> None:
    """'serial' must be an integer >= 0."""
    doc = edited(billing, lambda d: d.update(serial=serial))
    assert "'serial'" in refused(tmp_path, doc)


@pytest.mark.parametrize("where", ["serial", "extra"])
def test_no_number_may_have_a_fraction(tmp_path: Path, billing: PrivateKey, where: str) -> None:
    """Any float anywhere (1.0 included) is refused: numbers have one spelling."""
    doc = edited(billing, lambda d: d.update({where: 1.0}))
    assert "whole" in refused(tmp_path, doc)


@pytest.mark.parametrize("text", ["caf\u00e9", "tab\there", "line\nbreak", "\x7f"])
def test_strings_must_be_printable_ascii(tmp_path: Path, billing: PrivateKey, text: str) -> None:
    """A string that is not printable ASCII, in a value or a name, is refused."""
    assert "printable ASCII" in refused(tmp_path, edited(billing, lambda d: d.update(note=text)))
    assert "printable ASCII" in refused(tmp_path, edited(billing, lambda d: d.update({text: 1})))


@pytest.mark.parametrize("services", [None, [], "billing"])
def test_services_must_be_an_object(tmp_path: Path, billing: PrivateKey, services: Any) -> None:
    """'services' must be a JSON object."""
    doc = edited(billing, lambda d: d.update(services=services))
    assert "'services'" in refused(tmp_path, doc)


@pytest.mark.parametrize("name", ["Billing", "billing_v2", "billing.v2", "-billing", ""])
def test_service_names_must_be_canonical(tmp_path: Path, billing: PrivateKey, name: str) -> None:
    """A service listed under a name that is not canonical is refused."""
    doc = document({}, serial=1)
    doc["services"][name] = {"keys": [key_entry(billing)]}
    assert "invalid service name" in refused(tmp_path, doc)


@pytest.mark.parametrize("entry", [None, [], {}, {"keys": {}}, {"keys": "k"}])
def test_a_service_needs_a_keys_list(tmp_path: Path, entry: Any) -> None:
    """Each service is an object with a 'keys' list."""
    doc = document({})
    doc["services"]["billing"] = entry
    assert "needs a 'keys' list" in refused(tmp_path, doc)


@pytest.mark.parametrize("key", [None, "abc", {}, {"public_key": 5}, {"id": "0" * 16}])
def test_a_key_needs_a_public_key(tmp_path: Path, key: Any) -> None:
    """Each key is an object with a 'public_key' string."""
    doc = document({})
    doc["services"]["billing"] = {"keys": [key]}
    assert "billing' key 0: needs a 'public_key'" in refused(tmp_path, doc)


def test_a_public_key_that_does_not_parse_names_the_service(
    tmp_path: Path, billing: PrivateKey
) -> None:
    """A malformed public key is refused, saying which service and which key."""
    doc = document({"billing": [billing, generate_private_key()]})
    doc["services"]["billing"]["keys"][1]["public_key"] = "short"
    assert refused(tmp_path, doc) == "service 'billing' key 1: the public key does not parse"


def test_the_id_must_be_the_keys_id(tmp_path: Path, billing: PrivateKey) -> None:
    """A key listed under another key's id is refused, and the right id is given."""
    doc = document({"billing": [billing]})
    doc["services"]["billing"]["keys"][0]["id"] = generate_private_key().kid
    reason = refused(tmp_path, doc)
    assert "'id' must be the key's id" in reason
    assert billing.kid in reason


def test_a_key_without_an_id_is_refused(tmp_path: Path, billing: PrivateKey) -> None:
    """'id' is required."""
    doc = document({"billing": [billing]})
    del doc["services"]["billing"]["keys"][0]["id"]
    assert "'id'" in refused(tmp_path, doc)


def test_not_after_is_read_as_utc(tmp_path: Path, billing: PrivateKey) -> None:
    """not_after 2027-06-30T12:30:00Z becomes that Unix time on the key."""
    doc = document({})
    doc["services"]["billing"] = {"keys": [key_entry(billing, "2027-06-30T12:30:00Z")]}
    key = read(tmp_path, doc).services["billing"].keys[0]
    assert key.not_after == calendar.timegm((2027, 6, 30, 12, 30, 0, 0, 0, 0))


@pytest.mark.parametrize(
    "value", ["2027-06-30", "2027-06-30T00:00:00+00:00", "2027-06-30 00:00:00Z", 1830297600]
)
def test_not_after_must_have_the_one_format(
    tmp_path: Path, billing: PrivateKey, value: Any
) -> None:
    """not_after must be written YYYY-MM-DDTHH:MM:SSZ."""
    doc = document({})
    doc["services"]["billing"] = {"keys": [key_entry(billing, value)]}
    assert "'not_after' must look like" in refused(tmp_path, doc)


def test_not_after_must_be_a_real_date(tmp_path: Path, billing: PrivateKey) -> None:
    """February 30th is refused."""
    doc = document({})
    doc["services"]["billing"] = {"keys": [key_entry(billing, "2027-02-30T00:00:00Z")]}
    assert "'not_after' is not a date" in refused(tmp_path, doc)


@pytest.mark.parametrize("callers", ["orders", {"orders": True}, 3])
def test_callers_must_be_a_list(tmp_path: Path, billing: PrivateKey, callers: Any) -> None:
    """'callers' must be a list."""
    doc = edited(billing, lambda d: d["services"]["billing"].update(callers=callers))
    assert "'callers' must be a list" in refused(tmp_path, doc)


@pytest.mark.parametrize("caller", ["Orders", "orders_v2", 7, None])
def test_callers_must_be_canonical_names(tmp_path: Path, billing: PrivateKey, caller: Any) -> None:
    """Each caller is a canonical service name."""
    doc = edited(billing, lambda d: d["services"]["billing"].update(callers=["ok", caller]))
    assert "invalid caller name" in refused(tmp_path, doc)


def test_an_empty_callers_list_means_no_one(tmp_path: Path, billing: PrivateKey) -> None:
    """callers [] is read as the empty set, not as "unset"."""
    doc = edited(billing, lambda d: d["services"]["billing"].update(callers=[]))
    assert read(tmp_path, doc).services["billing"].callers == frozenset()


def signature(**fields: Any) -> dict[str, Any]:
    """A well-formed signature object, with ``fields`` replaced."""
    value = {"algorithm": "ed25519", "key_id": "0123456789abcdef", "value": "A" * 86}
    value.update(fields)
    return value


def test_a_well_formed_signature_is_read(tmp_path: Path, billing: PrivateKey) -> None:
    """A signature's key id and 64 bytes are read (whether it verifies is checked elsewhere)."""
    doc = edited(billing, lambda d: d.update(signature=signature()))
    assert read(tmp_path, doc).signature == ("0123456789abcdef", bytes(64))


def test_a_null_signature_is_unsigned(tmp_path: Path, billing: PrivateKey) -> None:
    """signature: null reads as unsigned."""
    assert read(tmp_path, edited(billing, lambda d: d.update(signature=None))).signature is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ed25519", "must be an ed25519 signature object"),
        (signature(algorithm="rsa"), "must be an ed25519 signature object"),
        (signature(key_id="0123456789ABCDEF"), "needs a 'key_id'"),
        (signature(key_id="0123"), "needs a 'key_id'"),
        (signature(value=None), "needs a 'key_id' (16 hex digits) and a 'value'"),
        (signature(value="A" * 85), "not base64"),
        (signature(value="A" * 84), "64 bytes"),
    ],
)
def test_a_malformed_signature_is_refused(
    tmp_path: Path, billing: PrivateKey, value: Any, reason: str
) -> None:
    """The signature object must be ed25519, with a 16-hex-digit key id and 64 bytes."""
    assert reason in refused(tmp_path, edited(billing, lambda d: d.update(signature=value)))


def test_format_time_writes_utc_seconds() -> None:
    """format_time writes whole UTC seconds in the document's one format."""
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(1830299400.9) == "2028-01-01T00:30:00Z"


def independent_canonical(value: Any) -> str:
    """Canonical JSON written from the spec alone: sorted keys, no white space, ASCII."""
    if isinstance(value, dict):
        items = (
            f"{independent_canonical(k)}:{independent_canonical(value[k])}" for k in sorted(value)
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(independent_canonical(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, str)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_canonical_bytes_match_an_independent_implementation(
    billing: PrivateKey, orders: PrivateKey
) -> None:
    """canonical_bytes is the spec's canonical JSON, byte for byte, without the signature."""
    doc = document({"orders": [orders], "billing": [billing]}, callers={"billing": ["orders"]})
    doc["services"]["billing"]["keys"][0]["not_after"] = "2027-06-30T00:00:00Z"
    doc["note"] = 'a "quoted" back\\slash / and ~'
    doc["flags"] = [True, False, None, 0, 12345678901234567890]
    expected = independent_canonical(doc).encode("ascii")
    doc["signature"] = signature()
    assert canonical_bytes(doc) == expected


def test_canonical_bytes_ignore_layout(tmp_path: Path, billing: PrivateKey) -> None:
    """Two files with the same content in another order and layout have the same bytes."""
    doc = document({"billing": [billing]}, callers={"billing": ["orders"]})
    (tmp_path / "a.json").write_text(json.dumps(doc, indent=4))
    reordered = dict(reversed(list(doc.items())))
    (tmp_path / "b.json").write_text(json.dumps(reordered, separators=(" , ", " : ")))
    a = parse((tmp_path / "a.json").read_bytes())
    b = parse((tmp_path / "b.json").read_bytes())
    assert canonical_bytes(a.raw) == canonical_bytes(b.raw)


def test_canonical_bytes_are_ascii() -> None:
    """Any non-ASCII character is escaped, so the bytes are ASCII whatever they are given."""
    assert canonical_bytes({"b": "\u00e9", "a": 1}) == b'{"a":1,"b":"\\u00e9"}'
