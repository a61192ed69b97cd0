"""Tests that docs/test-vectors.json opens, reproduces byte for byte, and follows the spec."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mscomm_sync import envelope as envelope_api
from mscomm_sync.envelope import Envelope, Opened, Sealed, target_from_endpoint
from mscomm_sync.envelope import envelope as envelope_module
from mscomm_sync.errors import IntegrityError
from mscomm_sync.keyring import Keyring
from mscomm_sync.replay import MemoryReplayStore

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "docs" / "test-vectors.json"
DOCUMENT: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DOCUMENT["vectors"]
IDS = [v["name"] for v in VECTORS]


def ring() -> Keyring:
    """The keyring of the vectors' fixed keys."""
    return Keyring.from_mapping(DOCUMENT["keys"])


def at(timestamp: int) -> Any:
    """A frozen clock reading ``timestamp``."""
    return lambda: float(timestamp)


def open_vector(vector: dict[str, Any], **changes: Any) -> Opened:
    """Open a vector as its recipient would, at the vector's own time."""
    clock = at(vector["timestamp"])
    receiver = Envelope(
        vector["recipient"],
        keyring=ring(),
        clock=clock,
        replay_store=MemoryReplayStore(clock=clock),
    )
    headers = changes.get("headers", vector["headers"])
    body = bytes.fromhex(changes.get("body_hex", vector["body_hex"]))
    if vector["direction"] == "request":
        return receiver.open_request(
            method=vector["method"], target=vector["target"], headers=headers, body=body
        )
    return receiver.open_response(
        sender=vector["sender"],
        method=vector["method"],
        target=vector["target"],
        status=changes.get("status", vector["status"]),
        reply_to=vector["reply_to"],
        headers=headers,
        body=body,
    )


def seal_vector(vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Sealed:
    """Seal a vector's inputs with its message id and timestamp pinned."""
    pinned = bytes.fromhex(vector["message_id"])
    monkeypatch.setattr(envelope_module, "_new_message_id", lambda: pinned)
    sender = Envelope(vector["sender"], keyring=ring(), clock=at(vector["timestamp"]))
    common: dict[str, Any] = {
        "recipient": vector["recipient"],
        "method": vector["method"],
        "target": vector["target"],
        "body": bytes.fromhex(vector["plaintext_hex"]),
        "content_type": vector["content_type"],
    }
    if vector["direction"] == "request":
        return sender.seal_request(**common)
    return sender.seal_response(status=vector["status"], reply_to=vector["reply_to"], **common)


# Independent implementation of docs/protocol.md, using only cryptography.


def spec_key_id(key_text: str) -> str:
    """Key id per the spec: first 16 hex digits of SHA-256(label || key)."""
    raw = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
    return hashlib.sha256(b"mscomm-sync key id v1\x00" + raw).hexdigest()[:16]


def spec_message_key(key_text: str, message_id: str) -> bytes:
    """Message key per the spec: HKDF-SHA256, zero salt, info = label || message id."""
    raw = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=bytes(32),
        info=b"mscomm-sync/1 message key" + bytes.fromhex(message_id),
    ).derive(raw)


# The seal header as docs/protocol.md writes it: five fields, in this order, ";"-separated.
SPEC_SEAL = re.compile(
    r"v=(?P<v>1);kid=(?P<kid>[0-9a-f]{16});ts=(?P<ts>0|[1-9][0-9]*)"
    r";id=(?P<id>[0-9a-f]{32});ct=(?P<ct>(?:[0-9a-f]{2})+)"
)


def spec_parse_seal(value: str) -> dict[str, str]:
    """Split an X-Mscomm-Seal value into its fields per the spec, or raise ValueError."""
    match = SPEC_SEAL.fullmatch(value)
    if match is None:
        raise ValueError(f"not a seal header per the spec: {value!r}")
    return match.groupdict()


def spec_associated_data(vector: dict[str, Any], seal: dict[str, str]) -> bytes:
    """Associated data per the spec: label, eleven 32-bit lengths, eleven UTF-8 fields.

    Version, key id, timestamp and message id come from the parsed seal header, the
    rest from the facts the receiver knows.
    """
    fields = [
        seal["v"],
        seal["kid"],
        vector["direction"],
        vector["sender"],
        vector["recipient"],
        vector["method"],
        vector["target"],
        seal["ts"],
        seal["id"],
        "" if vector["status"] is None else str(vector["status"]),
        vector["reply_to"],
    ]
    encoded = [f.encode("utf-8") for f in fields]
    return (
        b"mscomm-sync envelope"
        + struct.pack(">11I", *(len(f) for f in encoded))
        + b"".join(encoded)
    )


def test_vectors_cover_the_required_cases() -> None:
    """The file holds a JSON request, a body-less GET and a response."""
    assert any(
        v["direction"] == "request"
        and v["content_type"] == "application/json"
        and v["plaintext_hex"]
        for v in VECTORS
    )
    assert any(
        v["direction"] == "request" and v["method"] == "GET" and v["plaintext_hex"] == ""
        for v in VECTORS
    )
    assert any(v["direction"] == "response" and v["status"] is not None for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_opens_to_its_plaintext(vector: dict[str, Any]) -> None:
    """Opening each vector at its timestamp yields its plaintext, content type and sender."""
    opened = open_vector(vector)
    assert opened.body == bytes.fromhex(vector["plaintext_hex"])
    assert opened.content_type == vector["content_type"]
    assert opened.sender == vector["sender"]
    assert opened.message_id == vector["message_id"]
    assert opened.key_id == vector["key_id"]
    assert opened.timestamp == vector["timestamp"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_sealing_pinned_inputs_reproduces_the_exact_bytes(
    vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sealing a vector's inputs with its pinned id and clock gives its headers and body."""
    sealed = seal_vector(vector, monkeypatch)
    assert sealed.headers == vector["headers"]
    assert sealed.body.hex() == vector["body_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_target_is_the_canonical_target_of_its_endpoint(vector: dict[str, Any]) -> None:
    """Each vector's target is its endpoint's canonical target, whatever the instance URL."""
    assert vector["url"] == vector["instance_url"] + vector["endpoint"]
    path, _, query = vector["endpoint"].partition("?")
    assert target_from_endpoint(path, query) == vector["target"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_intermediates_match_the_implementation(vector: dict[str, Any]) -> None:
    """The message key and associated data in the file are what the package computes."""
    key = ring().keys_for(vector["sender"]).sealing
    assert key.kid == vector["key_id"]
    message_key = envelope_api.derive_message_key(key.secret, bytes.fromhex(vector["message_id"]))
    assert message_key.hex() == vector["message_key_hex"]
    aad = envelope_api.associated_data(
        kid=vector["key_id"],
        direction=vector["direction"],
        sender=vector["sender"],
        recipient=vector["recipient"],
        method=vector["method"],
        target=vector["target"],
        timestamp=vector["timestamp"],
        message_id=vector["message_id"],
        status=vector["status"],
        reply_to=vector["reply_to"],
    )
    assert aad.hex() == vector["associated_data_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_follows_the_written_protocol(vector: dict[str, Any]) -> None:
    """An independent implementation of docs/protocol.md (bare cryptography) opens each vector."""
    headers = vector["headers"]
    assert set(headers) == {
        "X-Encrypted-Payload",
        "X-Encryption-Service",
        "X-Mscomm-Seal",
        "Content-Type",
    }
    assert headers["X-Encrypted-Payload"] == "true"
    assert headers["X-Encryption-Service"] == vector["sender"]
    assert headers["Content-Type"] == "application/vnd.mscomm.sealed"
    seal = spec_parse_seal(headers["X-Mscomm-Seal"])
    assert seal["v"] == DOCUMENT["protocol_version"]
    assert seal["kid"] == vector["key_id"]
    assert seal["ts"] == str(vector["timestamp"])
    assert seal["id"] == vector["message_id"]
    key_text = DOCUMENT["keys"][headers["X-Encryption-Service"]]
    assert spec_key_id(key_text) == seal["kid"]
    message_key = spec_message_key(key_text, seal["id"])
    assert message_key.hex() == vector["message_key_hex"]
    aad = spec_associated_data(vector, seal)
    assert aad.hex() == vector["associated_data_hex"]
    aead = AESGCM(message_key)
    body = aead.decrypt(bytes(12), bytes.fromhex(vector["body_hex"]), aad)
    assert body.hex() == vector["plaintext_hex"]
    content_type = aead.decrypt(bytes(11) + b"\x01", bytes.fromhex(seal["ct"]), aad)
    assert content_type.decode("utf-8") == (vector["content_type"] or "")
    assert (
        len(bytes.fromhex(vector["body_hex"])) == len(bytes.fromhex(vector["plaintext_hex"])) + 16
    )


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_does_not_open_after_its_window(vector: dict[str, Any]) -> None:
    """The fixed clock matters: a vector opened 61 s later is rejected."""
    shifted = dict(vector, timestamp=vector["timestamp"] + 61)
    with pytest.raises(IntegrityError):
        open_vector(shifted)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_with_a_flipped_body_bit_is_rejected(vector: dict[str, Any]) -> None:
    """The vectors are real seals: one flipped bit makes each fail."""
    body = bytearray.fromhex(vector["body_hex"])
    body[0] ^= 1
    with pytest.raises(IntegrityError):
        open_vector(vector, body_hex=body.hex())


def test_generator_reproduces_the_file() -> None:
    """scripts/make_test_vectors.py regenerates docs/test-vectors.json exactly."""
    spec = importlib.util.spec_from_file_location(
        "make_test_vectors", ROOT / "scripts" / "make_test_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == VECTORS_PATH.read_text(encoding="utf-8")


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_with_its_seal_fields_reordered_is_rejected(vector: dict[str, Any]) -> None:
    """The spec's field order is part of the format: the package and the spec parser both
    refuse the vector's own seal fields in another order, and accept them in order."""
    value = vector["headers"]["X-Mscomm-Seal"]
    fields = value.split(";")
    reordered = ";".join([fields[0], fields[2], fields[1], *fields[3:]])  # ts before kid
    assert sorted(reordered.split(";")) == sorted(fields)
    with pytest.raises(ValueError):
        spec_parse_seal(reordered)
    with pytest.raises(IntegrityError):
        open_vector(vector, headers=dict(vector["headers"], **{"X-Mscomm-Seal": reordered}))
    assert open_vector(vector).body == bytes.fromhex(vector["plaintext_hex"])
