"""Tests that docs/test-vectors.json opens, reproduces byte for byte, and follows the spec.

Each vector and each refusal is checked three ways:

* against the package: its envelope seals exactly the vector's bytes and
  opens them, and refuses each refusal for the reason the file gives;
* against a second implementation of ``docs/protocol.md`` written below with
  bare ``cryptography`` primitives (X25519, HKDF, AES-GCM, Ed25519) and
  nothing of the package, which reproduces every vector, opens every one and
  refuses every refusal for the same reason: a change of the wire format in
  the package fails here;
* on the wire: every request (and refusal of one) is sent to the real
  middleware under a real HTTP server on 127.0.0.1, which answers the paired
  requests with exactly the vectors' answers; every answer (and refusal of
  one) is served to the real client.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import math
import re
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mscomm_sync import CallPolicy, MicroServiceClient, RetryPolicy
from mscomm_sync import envelope as envelope_api
from mscomm_sync.client import session as session_module
from mscomm_sync.envelope import Envelope, Opened, Sealed, target_from_endpoint
from mscomm_sync.envelope import sealing as envelope_module
from mscomm_sync.envelope.crypto import derive_pair_key, message_aad
from mscomm_sync.envelope.fields import encode_section
from mscomm_sync.envelope.messages import Binding
from mscomm_sync.errors import (
    IntegrityError,
    ReplayGapError,
    ServiceUnavailableError,
    UnverifiedAnswerError,
)
from mscomm_sync.keyring import Keyring, variable_name
from mscomm_sync.registry import FileRegistry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.trust import Identity, PrivateKey, TrustStore
from mscomm_sync.trust.document import canonical_bytes, parse
from mscomm_sync.trust.signing import RootKey, sign, verify
from mscomm_sync.wsgi import EncryptionMiddleware
from mscomm_sync.wsgi.response import sealed_headers

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "docs" / "test-vectors.json"
DOCUMENT: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DOCUMENT["vectors"]
IDS = [v["name"] for v in VECTORS]
V2: dict[str, Any] = DOCUMENT["v2"]
V2_VECTORS: list[dict[str, Any]] = V2["vectors"]
V2_IDS = [v["name"] for v in V2_VECTORS]
ALL_VECTORS = VECTORS + V2_VECTORS
ALL_IDS = IDS + V2_IDS
BY_NAME = {v["name"]: v for v in ALL_VECTORS}
REFUSALS: list[dict[str, Any]] = DOCUMENT["refusals"]
REFUSAL_IDS = [r["name"] for r in REFUSALS]
SERVER_REFUSALS = [r for r in REFUSALS if r["refused_by"] == "server"]
CLIENT_REFUSALS = [r for r in REFUSALS if r["refused_by"] == "client"]
SEALED_BODY = "X-Mscomm-Sealed-Body"


def ring(vector: Optional[dict[str, Any]] = None) -> Keyring:
    """The v1 keyring a vector's receiver holds (the document's keys unless it says)."""
    keys = (vector or {}).get("receiver_keys", DOCUMENT["keys"])
    return Keyring.from_mapping(keys)


def at(timestamp: float) -> Callable[[], float]:
    """A frozen clock reading ``timestamp``."""
    return lambda: float(timestamp)


def version_of(item: dict[str, Any]) -> str:
    """The protocol version of a vector or refusal (v1 vectors do not say)."""
    return str(item.get("version", "1"))


def private_keys(service: str) -> list[PrivateKey]:
    """The v2 private keys the document gives ``service``, the current one first."""
    return [
        PrivateKey.from_text(k["private_key"], source=f"{service} in the vectors")
        for k in V2["keys"].get(service, [])
    ]


def trust_of_others(service: str, only: Optional[Mapping[str, list[str]]] = None) -> TrustStore:
    """A trust store holding every other service's public keys (or those ``only`` names)."""
    keys = only or {
        name: [k["public_key"] for k in entries]
        for name, entries in V2["keys"].items()
        if name != service
    }
    environ = {variable_name(name, "PUBLIC_KEY"): ",".join(texts) for name, texts in keys.items()}
    return TrustStore(environ=environ)


def receiver_envelope(item: dict[str, Any], clock: Callable[[], float], **options: Any) -> Envelope:
    """The envelope of the receiver of a vector or refusal: every key the document gives it."""
    name = item.get("receiver", item.get("recipient"))
    assert isinstance(name, str)
    options.setdefault("replay_store", MemoryReplayStore(clock=clock))
    return Envelope(
        name,
        keyring=ring(item),
        identity=Identity(name, keys=private_keys(name)),
        trust=trust_of_others(name),
        clock=clock,
        **options,
    )


def pinned_ids(monkeypatch: pytest.MonkeyPatch, message_id: str) -> None:
    """Make every message sealed from now on in this process take ``message_id``."""
    raw = bytes.fromhex(message_id)
    monkeypatch.setattr(envelope_module, "new_message_id", lambda: raw)


def request_pair(vector: dict[str, Any]) -> str:
    """The pair of key ids of the request a v2 answer answers (the answer's, reversed)."""
    return f"{vector['recipient_key_id']}-{vector['sender_key_id']}"


# -- the package -----------------------------------------------------------------------


def open_vector(vector: dict[str, Any], **changes: Any) -> Opened:
    """Open a vector as its recipient would, at the vector's own time (or ``timestamp``)."""
    clock = at(changes.get("timestamp", vector["timestamp"]))
    receiver = receiver_envelope(vector, clock, replay_store=MemoryReplayStore(clock=at(0)))
    headers = changes.get("headers", vector["headers"])
    body = bytes.fromhex(changes.get("body_hex", vector["body_hex"]))
    if vector["direction"] == "request":
        return receiver.open_request(
            method=vector["method"], target=vector["target"], headers=headers, body=body
        )
    request = None
    if version_of(vector) == "2":
        request = Sealed._make({}, (), vector["reply_to"], 0, "2", request_pair(vector))
    return receiver.open_response(
        sender=vector["sender"],
        method=vector["method"],
        target=vector["target"],
        status=changes.get("status", vector["status"]),
        reply_to=vector["reply_to"],
        headers=headers,
        body=body,
        request=request,
    )


def seal_vector(vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Sealed:
    """Seal a vector's inputs with the package, its message id and timestamp pinned."""
    pinned_ids(monkeypatch, vector["message_id"])
    v2 = version_of(vector) == "2"
    sender_name, recipient = vector["sender"], vector["recipient"]
    if v2:
        own = next(k for k in private_keys(sender_name) if k.kid == vector["sender_key_id"])
        peer = next(k for k in private_keys(recipient) if k.kid == vector["recipient_key_id"])
        sender = Envelope(
            sender_name,
            keyring=Keyring.from_mapping({}),
            identity=Identity(sender_name, keys=[own]),
            trust=trust_of_others(sender_name, {recipient: [peer.public.text]}),
            versions=("2",),
            clock=at(vector["timestamp"]),
        )
    else:
        sender = Envelope(
            sender_name,
            keyring=ring(),
            identity=Identity(sender_name, environ={}),
            trust=TrustStore(environ={}),
            clock=at(vector["timestamp"]),
        )
    common: dict[str, Any] = {
        "recipient": recipient,
        "method": vector["method"],
        "target": vector["target"],
        "body": bytes.fromhex(vector["plaintext_hex"]),
        "content_type": vector["content_type"],
    }
    if v2:
        common["headers"] = [tuple(h) for h in vector["sealed_headers"]]
    if vector["direction"] == "request":
        return sender.seal_request(**common)
    request = None
    if v2:
        request = Opened._make(
            recipient, b"", None, vector["reply_to"], request_pair(vector), 0, "2", ()
        )
    return sender.seal_response(
        status=vector["status"], reply_to=vector["reply_to"], request=request, **common
    )


# -- an independent implementation of docs/protocol.md, with bare cryptography ------------

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,126}[a-z0-9])?\Z")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?\Z")
META_NONCE = bytes(11) + b"\x01"
BODY_NONCE = bytes(12)


class Refused(Exception):
    """The spec says to refuse the message; ``reason`` names the step, ``status`` the answer."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def b64_decode_key(text: str) -> bytes:
    """A key's text: URL-safe base64 of 32 bytes, padding optional."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert len(raw) == 32
    return raw


def b64_encode(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64_decode_strict(text: str) -> bytes:
    """X-Mscomm-Sealed-Body's one spelling: URL-safe alphabet, no padding, unused bits zero."""
    if any(c not in B64_ALPHABET for c in text) or len(text) % 4 == 1:
        raise Refused("malformed sealed body header")
    bits = {0: 0, 2: 4, 3: 2}[len(text) % 4]
    if bits and B64_ALPHABET.index(text[-1]) & ((1 << bits) - 1):
        raise Refused("malformed sealed body header")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hkdf(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with an all-zero 32-byte salt and 32 bytes of output."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=info).derive(ikm)


def spec_key_id(key_text: str) -> str:
    """v1 key id per the spec: first 16 hex digits of SHA-256(label || key)."""
    return hashlib.sha256(b"mscomm-sync key id v1\x00" + b64_decode_key(key_text)).hexdigest()[:16]


def spec_message_key(key_text: str, message_id: str) -> bytes:
    """v1 message key per the spec: HKDF-SHA256, zero salt, info = label || message id."""
    return hkdf(b64_decode_key(key_text), b"mscomm-sync/1 message key" + bytes.fromhex(message_id))


def spec_public_key(private: bytes) -> bytes:
    """The X25519 public key of a private key."""
    own = X25519PrivateKey.from_private_bytes(private)
    return own.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def spec_key_id_v2(public: bytes) -> str:
    """v2 key id: first 16 hex digits of SHA-256(b"mscomm-sync key id v2\\x00" || public key)."""
    return hashlib.sha256(b"mscomm-sync key id v2\x00" + public).hexdigest()[:16]


def spec_shared_secret(private: bytes, peer_public: bytes) -> bytes:
    """The X25519 shared secret (the all-zero result is an error in cryptography)."""
    own = X25519PrivateKey.from_private_bytes(private)
    return own.exchange(X25519PublicKey.from_public_bytes(peer_public))


def spec_pair_key(shared: bytes, one: tuple[str, bytes], other: tuple[str, bytes]) -> bytes:
    """The pair key: HKDF of the X25519 secret, info = label then both services by name order."""
    info = b"mscomm-sync/2 pair key"
    for name, public in sorted((one, other)):
        raw = name.encode("ascii")
        info += struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(public)) + public
    return hkdf(shared, info)


def spec_message_key_v2(pair_key: bytes, message_id: str) -> bytes:
    """v2 message key: HKDF of the pair key, info = b"mscomm-sync/2 message key" || id."""
    return hkdf(pair_key, b"mscomm-sync/2 message key" + bytes.fromhex(message_id))


def spec_aad(version: str, kid: str, fields: list[str]) -> bytes:
    """Associated data: label, eleven 32-bit lengths, eleven UTF-8 fields.

    ``fields`` are the nine after version and key id: direction, sender,
    recipient, method, target, timestamp, message id, status, reply to.
    """
    label = b"mscomm-sync envelope v2" if version == "2" else b"mscomm-sync envelope"
    encoded = [f.encode("utf-8") for f in (version, kid, *fields)]
    assert len(encoded) == 11
    return label + struct.pack(">11I", *map(len, encoded)) + b"".join(encoded)


def spec_aad_fields(item: dict[str, Any], ts: str, message_id: str) -> list[str]:
    """The bound fields of a vector (or of what a receiver knows), after version and key id."""
    status = item.get("status")
    return [
        item["direction"],
        item["sender"],
        item["recipient"],
        item["method"],
        item["target"],
        ts,
        message_id,
        "" if status is None else str(status),
        item.get("reply_to", ""),
    ]


def varint(value: int) -> bytes:
    """A QUIC variable-length integer, shortest form (RFC 9000, section 16)."""
    for size, prefix in ((1, 0), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if value < 1 << (8 * size - 2):
            return (value | prefix << (8 * size - 8)).to_bytes(size, "big")
    raise ValueError("too large")


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """The QUIC variable-length integer at ``offset``, and the offset after it."""
    if offset >= len(data):
        raise ValueError("truncated")
    size = 1 << (data[offset] >> 6)
    if offset + size > len(data):
        raise ValueError("truncated")
    value = int.from_bytes(data[offset : offset + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, offset + size


def spec_field_section(content_type: Optional[str], headers: list[tuple[str, str]]) -> bytes:
    """The field section: varint(total) || (varint(len name) name varint(len value) value)*."""
    fields = ([("content-type", content_type)] if content_type else []) + headers
    out = b""
    for name, value in fields:
        assert TOKEN.match(name) and FIELD_VALUE.match(value)
        out += varint(len(name)) + name.encode("ascii") + varint(len(value)) + value.encode("ascii")
    return varint(len(out)) + out


def spec_read_section(data: bytes) -> tuple[Optional[str], list[tuple[str, str]]]:
    """Parse a whole field section; content-type only first and once."""
    length, offset = read_varint(data, 0)
    if offset + length != len(data):
        raise ValueError("length")
    content_type: Optional[str] = None
    fields: list[tuple[str, str]] = []
    while offset < len(data):
        pair = []
        for _ in range(2):
            size, offset = read_varint(data, offset)
            if offset + size > len(data):
                raise ValueError("overrun")
            pair.append(data[offset : offset + size].decode("ascii"))
            offset += size
        name, value = pair
        if not (TOKEN.match(name) and FIELD_VALUE.match(value)):
            raise ValueError("field")
        if name == "content-type":
            if fields or content_type is not None:
                raise ValueError("content-type")
            content_type = value
        else:
            fields.append((name, value))
    return content_type, fields


SPEC_SEAL = re.compile(
    r"v=(?P<v>1);kid=(?P<kid>[0-9a-f]{16});ts=(?P<ts>0|[1-9][0-9]{0,11})"
    r";id=(?P<id>[0-9a-f]{32});ct=(?P<ct>(?:[0-9a-f]{2}){16,1040})"
)
SPEC_SEAL_V2 = re.compile(
    r"v=(?P<v>2);skid=(?P<skid>[0-9a-f]{16});rkid=(?P<rkid>[0-9a-f]{16})"
    r";ts=(?P<ts>0|[1-9][0-9]{0,11});id=(?P<id>[0-9a-f]{32})"
)


def spec_parse_seal(value: str) -> dict[str, str]:
    """Split an X-Mscomm-Seal value into its fields per the spec, or raise ValueError."""
    match = SPEC_SEAL.fullmatch(value) or SPEC_SEAL_V2.fullmatch(value)
    if match is None:
        raise ValueError(f"not a seal header per the spec: {value!r}")
    fields = match.groupdict()
    fields["kid"] = fields.get("kid") or f"{fields['skid']}-{fields['rkid']}"
    return fields


def spec_seal(
    item: dict[str, Any], key: bytes, peer_public: Optional[bytes] = None
) -> tuple[str, bytes]:
    """Seal a vector's inputs per the spec: the seal header's value and the sealed body.

    v1: ``key`` is the sender's shared key. v2: ``key`` is the sender's
    private key and ``peer_public`` the recipient's public key.
    """
    ts, message_id = str(item["timestamp"]), item["message_id"]
    plaintext = bytes.fromhex(item["plaintext_hex"])
    if peer_public is None:
        kid = hashlib.sha256(b"mscomm-sync key id v1\x00" + key).hexdigest()[:16]
        aad = spec_aad("1", kid, spec_aad_fields(item, ts, message_id))
        aead = AESGCM(hkdf(key, b"mscomm-sync/1 message key" + bytes.fromhex(message_id)))
        ct = aead.encrypt(META_NONCE, (item["content_type"] or "").encode("utf-8"), aad)
        seal = f"v=1;kid={kid};ts={ts};id={message_id};ct={ct.hex()}"
        return seal, aead.encrypt(BODY_NONCE, plaintext, aad)
    own_public = spec_public_key(key)
    shared = spec_shared_secret(key, peer_public)
    return spec_seal_v2(item, shared, own_public, peer_public)


def spec_seal_v2(
    item: dict[str, Any], shared: bytes, sender_public: bytes, recipient_public: bytes
) -> tuple[str, bytes]:
    """Seal a v2 message per the spec from the pair's X25519 secret and both public keys."""
    ts, message_id = str(item["timestamp"]), item["message_id"]
    plaintext = bytes.fromhex(item["plaintext_hex"])
    pair = f"{spec_key_id_v2(sender_public)}-{spec_key_id_v2(recipient_public)}"
    pair_key = spec_pair_key(
        shared, (item["sender"], sender_public), (item["recipient"], recipient_public)
    )
    aad = spec_aad("2", pair, spec_aad_fields(item, ts, message_id))
    aead = AESGCM(spec_message_key_v2(pair_key, message_id))
    section = spec_field_section(item["content_type"], [tuple(h) for h in item["sealed_headers"]])
    head = aead.encrypt(META_NONCE, section, aad)
    skid, rkid = pair.split("-")
    seal = f"v=2;skid={skid};rkid={rkid};ts={ts};id={message_id}"
    return seal, varint(len(head)) + head + aead.encrypt(BODY_NONCE, plaintext, aad)


class SpecReceiver:
    """A receiver per docs/protocol.md, holding the keys the document gives one service.

    Args:
        name: the service.
        now: its clock (Unix seconds, maybe fractional).
        v1_keys: service name to that service's v1 keys (raw).
        replay_since: the first second its replay store vouches for.
    """

    window = 60

    def __init__(
        self,
        name: str,
        now: float,
        v1_keys: Mapping[str, list[bytes]],
        replay_since: float = -math.inf,
    ) -> None:
        self.name = name
        self.now = now
        self.v1_keys = v1_keys
        self.own = [b64_decode_key(k["private_key"]) for k in V2["keys"].get(name, [])]
        self.peers = {
            service: [b64_decode_key(k["public_key"]) for k in keys]
            for service, keys in V2["keys"].items()
            if service != name
        }
        self.replay_since = replay_since
        self.seen: set[tuple[str, str]] = set()

    def receive(self, message: dict[str, Any]) -> dict[str, Any]:
        """Verify and open one delivery (a refusal's fields, or a vector's as delivered).

        Returns:
            sender, content_type, headers and body of the opened message.

        Raises:
            Refused: with the reason of the first check that fails.
        """
        headers = {k.lower(): v for k, v in message["headers"].items()}
        body = bytes.fromhex(message["body_hex"])
        response = message["direction"] == "response"
        if response:
            body = self._sealed_body(message, headers, body)
        if headers.get("x-encrypted-payload") != "true":
            raise Refused("not sealed")
        seal_value = headers.get("x-mscomm-seal", "")
        try:
            seal = spec_parse_seal(seal_value)
        except ValueError:
            known = seal_value.split(";")[0] in ("v=1", "v=2")
            raise Refused("malformed envelope" if known else "unsupported version") from None
        sender = headers.get("x-encryption-service")
        if sender is None:
            raise Refused("malformed envelope")
        if not NAME.match(sender):
            raise Refused("malformed sender")
        if response and sender != message["expected_sender"]:
            raise Refused("unexpected sender")
        method = message["method"].upper()
        if not re.fullmatch(r"[A-Z]{1,16}", method):
            raise Refused("malformed envelope")
        if response:
            version, pair = message["request_version"], message["request_pair"]
            if seal["v"] != version or (
                version == "2" and seal["kid"] != "-".join(reversed(pair.split("-")))
            ):
                raise Refused("answer sealed otherwise than its request")
        bound = dict(message, sender=sender, recipient=self.name, method=method)
        fields = spec_aad_fields(bound, seal["ts"], seal["id"])
        aad = spec_aad(seal["v"], seal["kid"], fields)
        if seal["v"] == "1":
            opened = self._open_v1(sender, seal, aad, body)
        else:
            opened = self._open_v2(sender, seal, aad, body)
        ts = int(seal["ts"])
        if not response:
            if ts < self.replay_since:
                raise Refused("sealed before the replay store began", 503)
            if (sender, seal["id"]) in self.seen:
                raise Refused("replay")
            self.seen.add((sender, seal["id"]))
        return dict(opened, sender=sender)

    def _sealed_body(self, message: dict[str, Any], headers: dict[str, str], body: bytes) -> bytes:
        """An answer HTTP gives no body carries its sealed body in the header, and only it."""
        status = message["status"]
        carried = headers.get(SEALED_BODY.lower())
        if message["method"] == "HEAD" or status < 200 or status in (204, 304):
            if carried is None or body:
                raise Refused("sealed body misplaced")
            return b64_decode_strict(carried)
        if carried is not None:
            raise Refused("sealed body misplaced")
        return body

    def _fresh(self, ts: str) -> None:
        now = math.floor(self.now)
        if not now - self.window <= int(ts) <= now + self.window:
            raise Refused("stale timestamp")

    def _open_v1(
        self, sender: str, seal: dict[str, str], aad: bytes, body: bytes
    ) -> dict[str, Any]:
        key = next(
            (
                k
                for k in self.v1_keys.get(sender, [])
                if hashlib.sha256(b"mscomm-sync key id v1\x00" + k).hexdigest()[:16] == seal["kid"]
            ),
            None,
        )
        if key is None:
            raise Refused("unknown key id")
        self._fresh(seal["ts"])
        aead = AESGCM(hkdf(key, b"mscomm-sync/1 message key" + bytes.fromhex(seal["id"])))
        try:
            content_type = aead.decrypt(META_NONCE, bytes.fromhex(seal["ct"]), aad).decode()
            plaintext = aead.decrypt(BODY_NONCE, body, aad)
        except (InvalidTag, UnicodeDecodeError):
            raise Refused("bad tag") from None
        return {"content_type": content_type or None, "headers": [], "body": plaintext}

    def _open_v2(
        self, sender: str, seal: dict[str, str], aad: bytes, body: bytes
    ) -> dict[str, Any]:
        own = next(
            (k for k in self.own if spec_key_id_v2(spec_public_key(k)) == seal["rkid"]), None
        )
        peer = next(
            (p for p in self.peers.get(sender, []) if spec_key_id_v2(p) == seal["skid"]), None
        )
        if own is None:
            raise Refused("unknown recipient key id")
        if peer is None:
            raise Refused("no trusted public key of the sender with that id")
        self._fresh(seal["ts"])
        try:
            length, offset = read_varint(body, 0)
        except ValueError:
            raise Refused("malformed sealed headers") from None
        if length < 16 or offset + length > len(body) - 16:
            raise Refused("malformed sealed headers")
        shared = spec_shared_secret(own, peer)
        pair_key = spec_pair_key(shared, (self.name, spec_public_key(own)), (sender, peer))
        aead = AESGCM(spec_message_key_v2(pair_key, seal["id"]))
        try:
            section = aead.decrypt(META_NONCE, body[offset : offset + length], aad)
            plaintext = aead.decrypt(BODY_NONCE, body[offset + length :], aad)
        except InvalidTag:
            raise Refused("bad tag") from None
        try:
            content_type, fields = spec_read_section(section)
        except (ValueError, UnicodeDecodeError):
            raise Refused("malformed sealed headers") from None
        return {"content_type": content_type, "headers": fields, "body": plaintext}


def spec_receiver(item: dict[str, Any], **changes: Any) -> SpecReceiver:
    """The receiver of a vector or refusal, with the keys the document gives it."""
    keys = item.get("receiver_keys", DOCUMENT["keys"])
    v1_keys = {name: [b64_decode_key(k) for k in text.split(",")] for name, text in keys.items()}
    return SpecReceiver(
        changes.get("name", item.get("receiver", item.get("recipient"))),
        changes.get("now", item.get("receiver_time", item.get("timestamp"))),
        v1_keys,
        item.get("replay_store_since", -math.inf),
    )


def as_delivered(vector: dict[str, Any]) -> dict[str, Any]:
    """What the receiver of a vector is given and knows, the vector unchanged."""
    headers = dict(vector["headers"])
    body_hex = vector["body_hex"]
    if "sealed_body_header" in vector:
        headers[SEALED_BODY] = vector["sealed_body_header"]
        body_hex = ""
    out = dict(vector, headers=headers, body_hex=body_hex)
    out.update(receiver=vector["recipient"], receiver_time=vector["timestamp"])
    if vector["direction"] == "response":
        out["expected_sender"] = vector["sender"]
        out["request_version"] = version_of(vector)
        out["request_pair"] = request_pair(vector) if version_of(vector) == "2" else None
    return out


# -- the vectors: coverage -----------------------------------------------------------------


def test_vectors_cover_the_required_cases() -> None:
    """Both versions have a request and its answer, HEAD with its bodiless answer, a 204, a 304
    and a rotation case; v2 a request with several sealed headers."""
    for version, vectors in (("1", VECTORS), ("2", V2_VECTORS)):
        requests_ = [v for v in vectors if v["direction"] == "request"]
        answers = [v for v in vectors if v["direction"] == "response"]
        asked = {v["message_id"]: v for v in requests_}
        assert any(a["reply_to"] in asked and a["plaintext_hex"] for a in answers), version
        assert any(
            a["method"] == "HEAD" and "sealed_body_header" in a and a["reply_to"] in asked
            for a in answers
        ), version
        for status in (204, 304):
            assert any(a["status"] == status and "sealed_body_header" in a for a in answers)
        assert any("rotation" in v["name"] for v in vectors), version
    assert any(len(v["sealed_headers"]) >= 4 for v in V2_VECTORS if v["direction"] == "request")
    assert any(
        v["recipient_key_id"] == V2["keys"]["billing"][1]["key_id"]
        for v in V2_VECTORS
        if v["direction"] == "request"
    )
    rotation = BY_NAME["request-rotation-older-key"]
    held = rotation["receiver_keys"]["orders"].split(",")
    assert len(held) == 2 and spec_key_id(held[1]) == rotation["key_id"] != spec_key_id(held[0])


def test_refusals_cover_the_required_failures() -> None:
    """Both versions have refusals for a wrong key id, a flipped byte, a changed target and
    method, a stale timestamp and the sealed-body rule; v2 for non-canonical base64."""
    for version in ("1", "2"):
        reasons = {r["reason"] for r in REFUSALS if r["version"] == version}
        changes = " ".join(r["name"] for r in REFUSALS if r["version"] == version)
        assert {"bad tag", "stale timestamp", "not sealed", "replay"} <= reasons, version
        assert "sealed body misplaced" in reasons and "key-id" in changes, version
        for change in ("flipped", "changed-target", "changed-method", "stale-past"):
            assert change in changes, (version, change)
    v2_reasons = {r["reason"] for r in REFUSALS if r["version"] == "2"}
    assert {
        "malformed sealed body header",
        "unknown recipient key id",
        "no trusted public key of the sender with that id",
        "answer sealed otherwise than its request",
        "sealed before the replay store began",
    } <= v2_reasons
    assert len(set(REFUSAL_IDS)) == len(REFUSAL_IDS)


@pytest.mark.parametrize("refusal", REFUSALS, ids=REFUSAL_IDS)
def test_each_refusal_differs_from_its_vector(refusal: dict[str, Any]) -> None:
    """A refusal is its base vector changed in some way, so its base opening shows the change
    is what is refused."""
    base = as_delivered(BY_NAME[refusal["based_on"]])
    keys = ("direction", "receiver_time", "method", "target", "status", "reply_to", "headers")
    changed = [k for k in (*keys, "body_hex", "request_pair") if refusal.get(k) != base.get(k)]
    assert changed or "delivered_before" in refusal or "replay_store_since" in refusal


# -- the vectors against the package -----------------------------------------------------------


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_vector_opens_to_its_plaintext(vector: dict[str, Any]) -> None:
    """Opening each vector at its timestamp yields its plaintext, content type, headers and
    sender."""
    opened = open_vector(vector)
    assert opened.body == bytes.fromhex(vector["plaintext_hex"])
    assert opened.content_type == vector["content_type"]
    assert opened.sender == vector["sender"]
    assert opened.message_id == vector["message_id"]
    assert opened.timestamp == vector["timestamp"]
    assert opened.version == version_of(vector)
    if version_of(vector) == "2":
        assert opened.key_id == f"{vector['sender_key_id']}-{vector['recipient_key_id']}"
        assert [list(h) for h in opened.headers] == vector["sealed_headers"]
    else:
        assert opened.key_id == vector["key_id"]


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_sealing_pinned_inputs_reproduces_the_exact_bytes(
    vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sealing a vector's inputs with its pinned id and clock gives its headers and body, and
    a bodiless answer's X-Mscomm-Sealed-Body."""
    sealed = seal_vector(vector, monkeypatch)
    assert sealed.headers == vector["headers"]
    assert sealed.body.hex() == vector["body_hex"]
    if "sealed_body_header" in vector:
        headers, body = sealed_headers([], sealed, vector["status"], bodiless=True)
        assert (dict(headers)[SEALED_BODY], body) == (vector["sealed_body_header"], [])


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_vector_target_is_the_canonical_target_of_its_endpoint(vector: dict[str, Any]) -> None:
    """Each vector's target is its endpoint's canonical target, whatever the instance URL."""
    assert vector["url"] == vector["instance_url"] + vector["endpoint"]
    path, _, query = vector["endpoint"].partition("?")
    assert target_from_endpoint(path, query) == vector["target"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_intermediates_match_the_implementation(vector: dict[str, Any]) -> None:
    """The v1 message key and associated data in the file are what the package computes."""
    key = ring().keys_for(vector["sender"]).find(vector["key_id"])
    assert key is not None
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


@pytest.mark.parametrize("vector", V2_VECTORS, ids=V2_IDS)
def test_v2_vector_intermediates_match_the_implementation(vector: dict[str, Any]) -> None:
    """The v2 shared secret, pair key, message key, associated data and field section in the
    file are what the package computes."""
    own = next(k for k in private_keys(vector["sender"]) if k.kid == vector["sender_key_id"])
    peer = next(k for k in private_keys(vector["recipient"]) if k.kid == vector["recipient_key_id"])
    shared = own.exchange(peer.public)
    assert shared.hex() == vector["shared_secret_hex"]
    pair_key = derive_pair_key(
        shared, (vector["sender"], own.public.raw), (vector["recipient"], peer.public.raw)
    )
    assert pair_key.hex() == vector["pair_key_hex"]
    message_id = bytes.fromhex(vector["message_id"])
    message_key = envelope_api.derive_message_key(pair_key, message_id, "2")
    assert message_key.hex() == vector["message_key_hex"]
    status = "" if vector["status"] is None else str(vector["status"])
    binding = Binding._make(
        vector["direction"], vector["sender"], vector["recipient"], vector["method"],
        vector["target"], status, vector["reply_to"],
    )  # fmt: skip
    pair = f"{own.kid}-{peer.kid}"
    aad = message_aad("2", pair, binding, str(vector["timestamp"]), vector["message_id"])
    assert aad.hex() == vector["associated_data_hex"]
    section = encode_section(vector["content_type"], [tuple(h) for h in vector["sealed_headers"]])
    assert section.hex() == vector["field_section_hex"]


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_vector_does_not_open_after_its_window(vector: dict[str, Any]) -> None:
    """The fixed clock matters: a vector opened 61 s later is rejected."""
    with pytest.raises(IntegrityError) as info:
        open_vector(vector, timestamp=vector["timestamp"] + 61)
    assert info.value.reason == "stale timestamp"


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_vector_with_a_flipped_body_bit_is_rejected(vector: dict[str, Any]) -> None:
    """The vectors are real seals: one flipped bit anywhere in the body's tag makes each fail."""
    body = bytearray.fromhex(vector["body_hex"])
    body[-1] ^= 1
    with pytest.raises(IntegrityError) as info:
        open_vector(vector, body_hex=body.hex())
    assert info.value.reason == "bad tag"


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_vector_with_its_seal_fields_reordered_is_rejected(vector: dict[str, Any]) -> None:
    """The spec's field order is part of the format: the package and the spec parser both
    refuse the vector's own seal fields in another order, and accept them in order."""
    value = vector["headers"]["X-Mscomm-Seal"]
    fields = value.split(";")
    reordered = ";".join([fields[0], fields[2], fields[1], *fields[3:]])
    assert sorted(reordered.split(";")) == sorted(fields)
    with pytest.raises(ValueError):
        spec_parse_seal(reordered)
    with pytest.raises(IntegrityError):
        open_vector(vector, headers=dict(vector["headers"], **{"X-Mscomm-Seal": reordered}))
    assert open_vector(vector).body == bytes.fromhex(vector["plaintext_hex"])


@pytest.mark.parametrize("offset", [-60, 60, 59.999, -59.5])
def test_freshness_accepts_the_whole_window_in_whole_seconds(offset: float) -> None:
    """now = floor(clock), and now - 60 <= ts <= now + 60 opens, in the package and the spec."""
    vector = BY_NAME["v2-request-post-json"]
    now = vector["timestamp"] + offset
    assert open_vector(vector, timestamp=now).body == bytes.fromhex(vector["plaintext_hex"])
    assert spec_receiver(vector, now=now).receive(as_delivered(vector))["sender"] == "orders"


@pytest.mark.parametrize("offset", [-61, 61, 61.5, -60.5])
def test_freshness_refuses_past_the_window_in_whole_seconds(offset: float) -> None:
    """61 s either side is refused, and so is a clock 60.5 s early (its floor is 61 s early)."""
    vector = BY_NAME["v2-request-post-json"]
    now = vector["timestamp"] + offset
    with pytest.raises(IntegrityError) as info:
        open_vector(vector, timestamp=now)
    assert info.value.reason == "stale timestamp"
    with pytest.raises(Refused, match="stale timestamp"):
        spec_receiver(vector, now=now).receive(as_delivered(vector))


# -- the vectors against the independent implementation ---------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_follows_the_written_protocol(vector: dict[str, Any]) -> None:
    """An independent implementation of docs/protocol.md (bare cryptography) opens each v1
    vector and reproduces its intermediates."""
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
    aad = spec_aad("1", seal["kid"], spec_aad_fields(vector, seal["ts"], seal["id"]))
    assert aad.hex() == vector["associated_data_hex"]
    aead = AESGCM(message_key)
    body = aead.decrypt(bytes(12), bytes.fromhex(vector["body_hex"]), aad)
    assert body.hex() == vector["plaintext_hex"]
    content_type = aead.decrypt(bytes(11) + b"\x01", bytes.fromhex(seal["ct"]), aad)
    assert content_type.decode("utf-8") == (vector["content_type"] or "")
    assert (
        len(bytes.fromhex(vector["body_hex"])) == len(bytes.fromhex(vector["plaintext_hex"])) + 16
    )


@pytest.mark.parametrize("vector", V2_VECTORS, ids=V2_IDS)
def test_v2_vector_follows_the_written_protocol(vector: dict[str, Any]) -> None:
    """The independent implementation derives each v2 vector's keys, associated data and field
    section, and splits its body as the spec lays it out."""
    headers = vector["headers"]
    assert headers["X-Encrypted-Payload"] == "true"
    assert headers["X-Encryption-Service"] == vector["sender"]
    assert headers["Content-Type"] == "application/vnd.mscomm.sealed"
    seal = spec_parse_seal(headers["X-Mscomm-Seal"])
    assert (seal["v"], seal["ts"], seal["id"]) == (
        "2",
        str(vector["timestamp"]),
        vector["message_id"],
    )
    own = b64_decode_key(
        next(
            k["private_key"]
            for k in V2["keys"][vector["sender"]]
            if k["key_id"] == vector["sender_key_id"]
        )
    )
    peer = next(
        b64_decode_key(k["public_key"])
        for k in V2["keys"][vector["recipient"]]
        if k["key_id"] == vector["recipient_key_id"]
    )
    assert (seal["skid"], seal["rkid"]) == (
        spec_key_id_v2(spec_public_key(own)),
        spec_key_id_v2(peer),
    )
    shared = spec_shared_secret(own, peer)
    assert shared.hex() == vector["shared_secret_hex"]
    pair_key = spec_pair_key(
        shared, (vector["sender"], spec_public_key(own)), (vector["recipient"], peer)
    )
    assert pair_key.hex() == vector["pair_key_hex"]
    assert spec_message_key_v2(pair_key, seal["id"]).hex() == vector["message_key_hex"]
    aad = spec_aad("2", seal["kid"], spec_aad_fields(vector, seal["ts"], seal["id"]))
    assert aad.hex() == vector["associated_data_hex"]
    section = spec_field_section(
        vector["content_type"], [tuple(h) for h in vector["sealed_headers"]]
    )
    assert section.hex() == vector["field_section_hex"]
    body = bytes.fromhex(vector["body_hex"])
    length, offset = read_varint(body, 0)
    assert body[offset : offset + length].hex() == vector["sealed_fields_hex"]
    assert body[offset + length :].hex() == vector["ciphertext_hex"]
    assert len(bytes.fromhex(vector["sealed_fields_hex"])) == len(section) + 16
    assert len(bytes.fromhex(vector["ciphertext_hex"])) == len(vector["plaintext_hex"]) // 2 + 16


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_independent_sealer_reproduces_each_vector(vector: dict[str, Any]) -> None:
    """Sealing each vector's inputs per the spec alone gives its seal header and body, byte for
    byte, and a bodiless answer's header is that body in unpadded URL-safe base64."""
    if version_of(vector) == "2":
        key = b64_decode_key(
            next(
                k["private_key"]
                for k in V2["keys"][vector["sender"]]
                if k["key_id"] == vector["sender_key_id"]
            )
        )
        peer = next(
            b64_decode_key(k["public_key"])
            for k in V2["keys"][vector["recipient"]]
            if k["key_id"] == vector["recipient_key_id"]
        )
        seal, body = spec_seal(vector, key, peer)
    else:
        seal, body = spec_seal(vector, b64_decode_key(DOCUMENT["keys"][vector["sender"]]))
    assert seal == vector["headers"]["X-Mscomm-Seal"]
    assert body.hex() == vector["body_hex"]
    if "sealed_body_header" in vector:
        assert vector["sealed_body_header"] == b64_encode(body)
        assert b64_decode_strict(vector["sealed_body_header"]) == body


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=ALL_IDS)
def test_independent_receiver_opens_each_vector(vector: dict[str, Any]) -> None:
    """The spec's receiver opens each vector as delivered (a bodiless answer from its header)
    to its plaintext, content type and sealed headers."""
    opened = spec_receiver(vector).receive(as_delivered(vector))
    assert opened["body"].hex() == vector["plaintext_hex"]
    assert opened["content_type"] == vector["content_type"]
    assert opened["sender"] == vector["sender"]
    assert [list(h) for h in opened["headers"]] == vector.get("sealed_headers", [])


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("refusal", REFUSALS, ids=REFUSAL_IDS)
def test_independent_receiver_refuses_each_refusal_for_its_reason(refusal: dict[str, Any]) -> None:
    """The spec's receiver refuses each refusal at the step the file names, with its status."""
    receiver = spec_receiver(refusal)
    for name in refusal.get("delivered_before", []):
        receiver.receive(as_delivered(BY_NAME[name]))
    with pytest.raises(Refused) as info:
        receiver.receive(refusal)
    assert info.value.reason == refusal["reason"]
    if refusal["refused_by"] == "server":
        assert info.value.status == refusal["http_status"]


ENVELOPE_REFUSALS = [
    r
    for r in REFUSALS
    if r["reason"] not in ("sealed body misplaced", "malformed sealed body header")
]


@pytest.mark.parametrize("refusal", ENVELOPE_REFUSALS, ids=[r["name"] for r in ENVELOPE_REFUSALS])
def test_envelope_refuses_each_refusal_for_its_reason(refusal: dict[str, Any]) -> None:
    """The package's envelope refuses each refusal (the sealed-body rule aside: the client's)
    with the reason the file gives."""
    receiver = receiver_envelope(
        refusal,
        at(refusal["receiver_time"]),
        replay_store=MemoryReplayStore(clock=at(refusal.get("replay_store_since", 0))),
    )
    for name in refusal.get("delivered_before", []):
        earlier = BY_NAME[name]
        receiver.open_request(
            method=earlier["method"], target=earlier["target"], headers=earlier["headers"],
            body=bytes.fromhex(earlier["body_hex"]),
        )  # fmt: skip
    body = bytes.fromhex(refusal["body_hex"])
    if refusal["direction"] == "response" and SEALED_BODY in refusal["headers"]:
        text = refusal["headers"][SEALED_BODY]
        body = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    with pytest.raises(IntegrityError) as info:
        if refusal["direction"] == "request":
            receiver.open_request(
                method=refusal["method"], target=refusal["target"], headers=refusal["headers"],
                body=body,
            )  # fmt: skip
        else:
            pair = refusal["request_pair"] or ""
            request = Sealed._make({}, (), refusal["reply_to"], 0, refusal["request_version"], pair)
            receiver.open_response(
                sender=refusal["expected_sender"], method=refusal["method"],
                target=refusal["target"], status=refusal["status"], reply_to=refusal["reply_to"],
                headers=refusal["headers"], body=body, request=request,
            )  # fmt: skip
    assert info.value.reason == refusal["reason"]
    assert isinstance(info.value, ReplayGapError) == (refusal["http_status"] == 503)


# -- on the wire: the real middleware and the real client ---------------------------------------


class Clock:
    """A wall clock the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Switch:
    """A WSGI app that hands each request to the app the current test put in it."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


class VectorApp:
    """The app behind the middleware: it records what it was given and answers a request with
    its vector's answer (status, content type, headers, body), when the file pairs one."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer: Optional[dict[str, Any]] = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        self.seen.append({"environ": dict(environ), "body": body})
        answer = self.answer
        if answer is None:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        headers = [("Content-Type", answer["content_type"])] if answer["content_type"] else []
        headers += [(n, v) for n, v in answer.get("sealed_headers", [])]
        start_response(f"{answer['status']} Answer", headers)
        return [bytes.fromhex(answer["plaintext_hex"])]


@pytest.fixture(scope="module", params=["werkzeug", "waitress"])
def switch(request: pytest.FixtureRequest) -> Iterator[tuple[Switch, str]]:
    """A real HTTP server on 127.0.0.1 (werkzeug's threaded server, then waitress), serving
    whatever app the test puts in the switch."""
    app = Switch()
    if request.param == "waitress":
        from client.servers import WaitressServer

        with WaitressServer(app) as served:
            yield app, served.url
    else:
        with LiveServer(app) as live:
            yield app, live.url


def middleware_for(item: dict[str, Any], clock: Clock, app: VectorApp, **options: Any) -> Any:
    """The real middleware of a vector's (or refusal's) receiver, with the document's keys."""
    name = item.get("receiver", item.get("recipient"))
    sender = item["headers"]["X-Encryption-Service"]
    # A store that began long ago, unless the refusal says when it began.
    since = item.get("replay_store_since", 0)
    return EncryptionMiddleware(
        app,
        name,
        keyring=ring(item),
        identity=Identity(name, keys=private_keys(name)),
        trust=trust_of_others(name),
        allowed_callers=[sender.lower()],
        replay_store=MemoryReplayStore(clock=at(since)),
        clock=clock,
        **options,
    )


def send(url: str, item: dict[str, Any]) -> requests.Response:
    """Send a request vector (or refusal) as it is written, to the server at ``url``."""
    return requests.request(
        item["method"],
        url + item["target"],
        headers=item["headers"],
        data=bytes.fromhex(item["body_hex"]),
        timeout=10,
    )


def answer_of(request: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The vector answering ``request``, if the file has one."""
    return next(
        (
            v
            for v in ALL_VECTORS
            if v["direction"] == "response"
            and v["reply_to"] == request["message_id"]
            and v["status"] != 503
        ),
        None,
    )


def assert_answer_is(response: requests.Response, answer: dict[str, Any]) -> None:
    """The server's answer is the vector's, byte for byte: status, envelope headers, body."""
    assert response.status_code == answer["status"]
    for name, value in answer["headers"].items():
        assert response.headers[name] == value
    if "sealed_body_header" in answer:
        assert response.headers[SEALED_BODY] == answer["sealed_body_header"]
        assert response.content == b""
    else:
        assert SEALED_BODY not in response.headers
        assert response.content.hex() == answer["body_hex"]


REQUEST_VECTORS = [v for v in ALL_VECTORS if v["direction"] == "request"]


@pytest.mark.parametrize("vector", REQUEST_VECTORS, ids=[v["name"] for v in REQUEST_VECTORS])
def test_middleware_opens_each_request_vector_and_answers_with_its_answer(
    vector: dict[str, Any], switch: tuple[Switch, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request, sent as written to the real middleware, reaches the app as its plaintext,
    content type, caller and sealed headers; a paired request's answer is the file's answer."""
    server, url = switch
    app, clock = VectorApp(), Clock()
    answer = app.answer = answer_of(vector)
    clock.now = answer["timestamp"] if answer else vector["timestamp"]
    if answer:
        pinned_ids(monkeypatch, answer["message_id"])
    server.app = middleware_for(vector, clock, app)
    response = send(url, vector)
    assert len(app.seen) == 1
    seen = app.seen[0]
    environ = seen["environ"]
    assert seen["body"].hex() == vector["plaintext_hex"]
    assert environ.get("CONTENT_TYPE") == vector["content_type"]
    assert environ["mscomm.caller"] == vector["sender"]
    assert environ["mscomm.protocol"] == version_of(vector)
    assert environ["REQUEST_METHOD"] == vector["method"]
    joined: dict[str, str] = {}
    for name, value in vector.get("sealed_headers", []):
        key = "HTTP_" + name.upper().replace("-", "_")
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    for key, value in joined.items():
        assert environ[key] == value
    if answer is None:
        assert response.status_code == 200
    else:
        assert_answer_is(response, answer)


@pytest.mark.parametrize("refusal", SERVER_REFUSALS, ids=[r["name"] for r in SERVER_REFUSALS])
def test_middleware_refuses_each_request_refusal_with_its_status(
    refusal: dict[str, Any], switch: tuple[Switch, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refused request gets its status from the real middleware and never reaches the
    app; a 401 is the one fixed body, the not-executed 503 is the file's sealed answer."""
    server, url = switch
    app, clock = VectorApp(), Clock()
    clock.now = refusal["receiver_time"]
    server.app = middleware_for(refusal, clock, app)
    for name in refusal.get("delivered_before", []):
        assert send(url, BY_NAME[name]).status_code == 200
    app.seen.clear()
    if refusal["http_status"] == 503:
        pinned_ids(monkeypatch, BY_NAME["v2-response-not-executed"]["message_id"])
    response = send(url, refusal)
    assert app.seen == []
    assert response.status_code == refusal["http_status"]
    if refusal["http_status"] == 503:
        assert_answer_is(response, BY_NAME["v2-response-not-executed"])
    else:
        assert response.json() == {"error": "unauthorized"}
        assert "X-Encrypted-Payload" not in response.headers


def test_white_space_around_envelope_header_values_is_the_http_parser_s() -> None:
    """waitress (as gunicorn) strips the white space around a field value, as RFC 9110 says, so
    envelope headers sent with spaces and tabs around them, and lower-case names, arrive as
    the vector writes them and open (docs/protocol.md)."""
    from client.servers import WaitressServer

    server = Switch()
    with WaitressServer(server) as served:
        port = int(served.url.rsplit(":", 1)[1])
        for name in ("request-post-json", "v2-request-post-json"):
            _send_padded(server, port, BY_NAME[name])


def _send_padded(server: Switch, port: int, vector: dict[str, Any]) -> None:
    """Send ``vector`` with white space around its header values; it must open and be answered."""
    app, clock = VectorApp(), Clock()
    app.answer = answer_of(vector)
    clock.now = vector["timestamp"] + 1
    server.app = middleware_for(vector, clock, app)
    body = bytes.fromhex(vector["body_hex"])
    lines = [f"POST {vector['target']} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k.lower()}: \t {v}  \t" for k, v in vector["headers"].items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall("\r\n".join(lines).encode("ascii") + body)
        status_line = conn.makefile("rb").readline()
    assert status_line.split()[1] == b"201", vector["name"]
    assert app.seen[0]["body"].hex() == vector["plaintext_hex"]


class ScriptedServer:
    """A socket server on 127.0.0.1 that reads each request whole and answers it with fixed
    bytes, then closes the connection. It counts the requests."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        for _ in range(1000):  # bounded: each turn waits at most 0.2 s
            if self._stop.is_set():
                return
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 1 << 20:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                length = int(match.group(1)) if match else 0
                while len(rest) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                self.requests += 1
                conn.sendall(self.answer)


def raw_answer(item: dict[str, Any]) -> bytes:
    """An answer vector (or refusal) as HTTP/1.1 bytes, framed as the middleware frames it."""
    body = bytes.fromhex(item["body_hex"])
    lines = [f"HTTP/1.1 {item['status']} Answer"]
    lines += [f"{k}: {v}" for k, v in item["headers"].items()]
    if item["status"] not in (204, 304):
        lines.append(f"Content-Length: {len(body)}")
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii") + body


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FileRegistry]:
    """A real file registry in a temporary directory."""
    reg = FileRegistry(tmp_path / "registry.json")
    yield reg
    reg.close()


def client_for(
    item: dict[str, Any],
    url: str,
    registry: FileRegistry,
    monkeypatch: pytest.MonkeyPatch,
    retries: int = 0,
) -> MicroServiceClient:
    """orders' real client, with the keys of the request an answer answers, its clock at the
    answer's time and its next message id the one the answer replies to."""
    monkeypatch.setattr(
        session_module, "Envelope", functools.partial(Envelope, clock=at(item["receiver_time"]))
    )
    pinned_ids(monkeypatch, item["reply_to"])
    registry.register(item["expected_sender"], url)
    options: dict[str, Any] = {}
    if item["request_version"] == "2":
        own_kid, peer_kid = item["request_pair"].split("-")
        peer = next(k for k in V2["keys"][item["expected_sender"]] if k["key_id"] == peer_kid)
        own = [k for k in private_keys("orders") if k.kid == own_kid]
        options.update(
            keyring=Keyring.from_mapping({}),
            identity=Identity("orders", keys=own),
            trust=trust_of_others("orders", {item["expected_sender"]: [peer["public_key"]]}),
        )
    else:
        options.update(
            keyring=ring(),
            identity=Identity("orders", environ={}),
            trust=TrustStore(environ={}),
        )
    return MicroServiceClient(
        "orders",
        registry=registry,
        policy=CallPolicy(retry=RetryPolicy(retries=retries, backoff_base=0.0, jitter=0.0)),
        **options,
    )


RESPONSE_VECTORS = [v for v in ALL_VECTORS if v["direction"] == "response" and v["status"] != 503]


@pytest.mark.parametrize("vector", RESPONSE_VECTORS, ids=[v["name"] for v in RESPONSE_VECTORS])
def test_client_opens_each_answer_vector(
    vector: dict[str, Any], registry: FileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answer, served as the middleware frames it, is opened by the real client to its
    status, plaintext, content type and (v2) sealed headers."""
    delivered = as_delivered(vector)
    with ScriptedServer(raw_answer(delivered)) as raw:
        client = client_for(delivered, raw.url, registry, monkeypatch)
        with client:
            response = client.request(
                target_service="billing", endpoint=vector["target"], method=vector["method"]
            )
    assert raw.requests == 1
    assert response.status_code == vector["status"]
    assert response.content.hex() == vector["plaintext_hex"]
    assert response.headers.get("Content-Type") == vector["content_type"]
    joined: dict[str, str] = {}
    for name, value in vector.get("sealed_headers", []):
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    for name, value in joined.items():
        assert response.headers[name] == value
    assert SEALED_BODY not in response.headers


@pytest.mark.parametrize("refusal", CLIENT_REFUSALS, ids=[r["name"] for r in CLIENT_REFUSALS])
def test_client_refuses_each_answer_refusal_for_its_reason(
    refusal: dict[str, Any], registry: FileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refused answer, served as written, makes the real client raise
    UnverifiedAnswerError with the file's reason (the sealed-body rule included)."""
    with ScriptedServer(raw_answer(refusal)) as raw:
        client = client_for(refusal, raw.url, registry, monkeypatch)
        with client, pytest.raises(UnverifiedAnswerError) as info:
            client.request(
                target_service="billing", endpoint=refusal["target"], method=refusal["method"]
            )
    assert raw.requests == 1
    assert info.value.reason == refusal["reason"]


def test_client_seals_again_when_answered_not_executed(
    registry: FileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sealed 503 of v2-response-not-executed makes the real client send its request again
    (here answered the same way, until its one retry is spent)."""
    vector = BY_NAME["v2-response-not-executed"]
    delivered = as_delivered(vector)
    with ScriptedServer(raw_answer(delivered)) as raw:
        client = client_for(delivered, raw.url, registry, monkeypatch, retries=1)
        with client, pytest.raises(ServiceUnavailableError):
            client.request(target_service="billing", endpoint=vector["target"], method="POST")
    assert raw.requests == 2


def public_of(service: str, index: int = 0) -> bytes:
    """The raw public key the document gives ``service`` (its current one by default)."""
    return b64_decode_key(V2["keys"][service][index]["public_key"])


def private_of(service: str, index: int = 0) -> bytes:
    """The raw private key the document gives ``service`` (its current one by default)."""
    return b64_decode_key(V2["keys"][service][index]["private_key"])


def forged_request(shared: bytes, sender: str, recipient: str) -> dict[str, Any]:
    """A new v2 request from ``sender`` to ``recipient`` sealed per the spec from ``shared``."""
    vector = BY_NAME["v2-request-post-json"]
    item = dict(vector, sender=sender, recipient=recipient, message_id="ab" * 16)
    seal, body = spec_seal_v2(item, shared, public_of(sender), public_of(recipient))
    headers = dict(vector["headers"], **{"X-Encryption-Service": sender, "X-Mscomm-Seal": seal})
    return dict(item, headers=headers, body_hex=body.hex())


def test_a_thief_of_billings_private_key_can_pose_as_orders_to_billing() -> None:
    """Key-compromise impersonation, as docs/security.md says: billing's private key alone gives
    the orders-billing pair key, so a request sealed as orders with it opens at billing."""
    shared = spec_shared_secret(private_of("billing"), public_of("orders"))
    forged = forged_request(shared, "orders", "billing")
    opened = open_vector(forged)
    assert (opened.sender, opened.body) == ("orders", bytes.fromhex(forged["plaintext_hex"]))


def test_a_thief_of_billings_private_key_cannot_pose_as_orders_to_ledger() -> None:
    """Billing's private key gives no other pair's key: a request to ledger sealed as orders
    with what it can compute is refused."""
    for shared in (
        spec_shared_secret(private_of("billing"), public_of("ledger")),
        spec_shared_secret(private_of("billing"), public_of("orders")),
    ):
        forged = forged_request(shared, "orders", "ledger")
        with pytest.raises(IntegrityError) as info:
            open_vector(forged)
        assert info.value.reason == "bad tag"


@pytest.mark.parametrize("outer", [None, "text/plain", "application/json"])
def test_the_outer_content_type_is_not_checked(outer: Optional[str]) -> None:
    """The sealed message's own Content-Type is informative: removed or changed, every vector
    still opens, in the package and in the spec's receiver."""
    for vector in (BY_NAME["request-post-json"], BY_NAME["v2-request-post-json"]):
        headers = {k: v for k, v in vector["headers"].items() if k != "Content-Type"}
        if outer is not None:
            headers["Content-Type"] = outer
        assert open_vector(vector, headers=headers).body.hex() == vector["plaintext_hex"]
        delivered = dict(as_delivered(vector), headers=headers)
        assert spec_receiver(vector).receive(delivered)["body"].hex() == vector["plaintext_hex"]


# -- the trust file ----------------------------------------------------------------------------

TRUST = V2["trust_file"]


def test_trust_file_signature_is_the_package_s() -> None:
    """The package signs the document into exactly the file's signed trust file, reads it, and
    verifies it against the root."""
    signed = sign(TRUST["document"], TRUST["root_private_key"], source="test")
    assert signed == TRUST["signed"]
    assert canonical_bytes(TRUST["document"]).decode("ascii") == TRUST["canonical"]
    document = parse(json.dumps(TRUST["signed"]).encode())
    root = RootKey(b64_decode_key(TRUST["root_public_key"]))
    assert root.kid == TRUST["root_key_id"]
    assert verify(document, (root,)) is root
    assert document.services["billing"].keys[1].kid == V2["keys"]["billing"][1]["key_id"]


def test_trust_file_follows_the_written_protocol() -> None:
    """Independently: the canonical bytes are the sorted, white-space-free ASCII JSON of the
    document without its signature, and the root's Ed25519 signature verifies over them; a
    changed serial does not."""
    signed = TRUST["signed"]
    unsigned = {k: v for k, v in signed.items() if k != "signature"}
    assert unsigned == TRUST["document"]
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert canonical == TRUST["canonical"]
    assert re.fullmatch(r"[\x20-\x7e]*", canonical)
    seed = b64_decode_key(TRUST["root_private_key"])
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw_public = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert b64_encode(raw_public) == TRUST["root_public_key"]
    kid = hashlib.sha256(b"mscomm-sync trust root\x00" + raw_public).hexdigest()[:16]
    assert signed["signature"] == {
        "algorithm": "ed25519",
        "key_id": kid,
        "value": signed["signature"]["value"],
    }
    value = signed["signature"]["value"]
    signature = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    Ed25519PublicKey.from_public_bytes(raw_public).verify(signature, canonical.encode("ascii"))
    for service, keys in V2["keys"].items():
        listed = signed["services"][service]["keys"]
        assert [k["id"] for k in listed] == [k["key_id"] for k in keys]
        assert [k["public_key"] for k in listed] == [k["public_key"] for k in keys]
        for key in listed:
            assert spec_key_id_v2(b64_decode_key(key["public_key"])) == key["id"]
    tampered = json.dumps(dict(unsigned, serial=8), sort_keys=True, separators=(",", ":"))
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(raw_public).verify(signature, tampered.encode())
    document = parse(json.dumps(dict(signed, serial=8)).encode())
    with pytest.raises(ValueError, match="does not verify"):
        verify(document, (RootKey(raw_public),))


@pytest.mark.parametrize("service", sorted(V2["keys"]))
def test_v2_key_table_follows_the_written_protocol(service: str) -> None:
    """Each v2 key's public half and id follow from its private half, in the package and the
    spec alike."""
    for entry in V2["keys"][service]:
        private = b64_decode_key(entry["private_key"])
        assert b64_encode(spec_public_key(private)) == entry["public_key"]
        assert spec_key_id_v2(spec_public_key(private)) == entry["key_id"]
        key = PrivateKey.from_text(entry["private_key"], source="test")
        assert (key.public.text, key.kid) == (entry["public_key"], entry["key_id"])


def test_generator_reproduces_the_file() -> None:
    """scripts/make_test_vectors.py regenerates docs/test-vectors.json exactly."""
    spec = importlib.util.spec_from_file_location(
        "make_test_vectors", ROOT / "scripts" / "make_test_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == VECTORS_PATH.read_text(encoding="utf-8")
