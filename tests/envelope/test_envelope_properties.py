"""Property-based tests (hypothesis) for the envelope: it parses bytes from the network."""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.seal import SEAL_FIELDS, seal_fields, seal_value, with_seal, with_seal_field

from mscomm_sync.envelope import (
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SERVICE,
    Envelope,
    Sealed,
)
from mscomm_sync.envelope.crypto import message_aad
from mscomm_sync.envelope.messages import Binding
from mscomm_sync.errors import IntegrityError
from mscomm_sync.keyring import Key, Keyring
from mscomm_sync.replay import MemoryReplayStore

T0 = 1_700_000_000.0
KEY_ALPHA = bytes(range(32))
KEY_ALPHA_NEXT = bytes(range(50, 82))
RING = Keyring.from_mapping(
    {
        "alpha": [KEY_ALPHA, KEY_ALPHA_NEXT],
        "alias": KEY_ALPHA,  # shares alpha's key: only the bound sender name tells them apart
        "billing": bytes(range(32, 64)),
        "carol": KEY_ALPHA,
    }
)
KID_NEXT = Key.from_bytes(KEY_ALPHA_NEXT).kid

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/plain; charset=utf-8", "image/png"]),
    st.text(min_size=1, max_size=60),
)
segments = st.text(min_size=0, max_size=12)
targets = st.builds(
    lambda parts, query: "/" + "/".join(parts) + (f"?{query}" if query else ""),
    st.lists(st.from_regex(r"[A-Za-z0-9%~._-]{0,8}", fullmatch=True), max_size=4),
    st.from_regex(r"[A-Za-z0-9%=&+._-]{0,16}", fullmatch=True),
)


def clock() -> float:
    """The shared, frozen wall clock."""
    return T0


def envelope(service: str) -> Envelope:
    """A fresh envelope (with an empty replay store) for ``service``."""
    return Envelope(service, keyring=RING, clock=clock, replay_store=MemoryReplayStore(clock=clock))


ALPHA = envelope("alpha")


def open_request(
    receiver: Envelope,
    sealed: Sealed,
    method: str,
    target: str,
    *,
    headers: Optional[dict[str, str]] = None,
    body: Optional[bytes] = None,
) -> Any:
    """Open a sealed request, optionally with replacement headers or body."""
    return receiver.open_request(
        method=method,
        target=target,
        headers=sealed.headers if headers is None else headers,
        body=sealed.body if body is None else body,
    )


def flip(data: bytes, bit: int) -> bytes:
    """Return ``data`` with one bit flipped."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@FAST
@given(body=st.binary(max_size=4096), content_type=content_types, method=methods, target=targets)
def test_seal_then_open_returns_any_payload(
    body: bytes, content_type: Optional[str], method: str, target: str
) -> None:
    """Seal then open gives back any body and content type."""
    sealed = ALPHA.seal_request(
        recipient="billing", method=method, target=target, body=body, content_type=content_type
    )
    opened = open_request(envelope("billing"), sealed, method, target)
    assert opened.body == body
    assert opened.content_type == (content_type or None)
    assert opened.sender == "alpha"
    assert len(sealed.body) == len(body) + 16


@FAST
@given(
    body=st.binary(max_size=2048),
    content_type=content_types,
    status=st.integers(min_value=100, max_value=599),
    reply_to=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)
def test_response_seal_then_open_returns_any_payload(
    body: bytes, content_type: Optional[str], status: int, reply_to: str
) -> None:
    """A sealed response opens with its body and content type for any status."""
    billing = envelope("billing")
    sealed = billing.seal_response(
        recipient="alpha",
        method="POST",
        target="/x",
        status=status,
        reply_to=reply_to,
        body=body,
        content_type=content_type,
    )
    opened = envelope("alpha").open_response(
        sender="billing",
        method="POST",
        target="/x",
        status=status,
        reply_to=reply_to,
        headers=sealed.headers,
        body=sealed.body,
    )
    assert (opened.body, opened.content_type) == (body, content_type or None)


@FAST
@given(body=st.binary(min_size=0, max_size=1024), data=st.data())
def test_any_single_bit_flip_in_the_body_is_rejected(body: bytes, data: st.DataObject) -> None:
    """Flipping any one bit of the sealed body (ciphertext or tag) is rejected."""
    sealed = ALPHA.seal_request(recipient="billing", method="POST", target="/x", body=body)
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed.body) * 8 - 1), label="bit")
    receiver = envelope("billing")
    try:
        open_request(receiver, sealed, "POST", "/x", body=flip(sealed.body, bit))
    except IntegrityError:
        pass
    else:
        raise AssertionError(f"bit {bit} of the body flipped and the message still opened")
    assert open_request(receiver, sealed, "POST", "/x").body == body  # id was not burnt


@SLOW
@given(body=st.binary(max_size=24))
def test_every_single_bit_flip_in_a_small_body_is_rejected(body: bytes) -> None:
    """Every one of the bit flips of a short sealed body is rejected."""
    sealed = ALPHA.seal_request(recipient="billing", method="POST", target="/x", body=body)
    receiver = envelope("billing")
    accepted = []
    for bit in range(len(sealed.body) * 8):
        try:
            open_request(receiver, sealed, "POST", "/x", body=flip(sealed.body, bit))
            accepted.append(bit)
        except IntegrityError:
            pass
    assert accepted == []


@SLOW
@given(content_type=content_types)
def test_every_single_bit_flip_in_the_sealed_content_type_is_rejected(
    content_type: Optional[str],
) -> None:
    """Flipping any one bit of the seal header's ct field is rejected."""
    sealed = ALPHA.seal_request(
        recipient="billing", method="GET", target="/x", content_type=content_type
    )
    value = seal_fields(sealed.headers[HEADER_SEAL])["ct"].encode("latin-1")
    accepted = []
    for bit in range(len(value) * 8):
        headers = with_seal_field(sealed.headers, "ct", flip(value, bit).decode("latin-1"))
        try:
            open_request(envelope("billing"), sealed, "GET", "/x", headers=headers)
            accepted.append(headers[HEADER_SEAL])
        except IntegrityError:
            pass
    assert accepted == [], f"{sealed.headers[HEADER_SEAL]!r} also opened as {accepted!r}"
    opened = open_request(envelope("billing"), sealed, "GET", "/x")
    assert opened.content_type == (content_type or None)


@SLOW
@given(content_type=content_types)
def test_sealed_content_type_header_is_canonical_hex(content_type: Optional[str]) -> None:
    """The seal's ct field is lower-case hex of the sealed content type and its tag."""
    sealed = ALPHA.seal_request(
        recipient="billing", method="GET", target="/x", content_type=content_type
    )
    value = seal_fields(sealed.headers[HEADER_SEAL])["ct"]
    raw = bytes.fromhex(value)
    assert raw.hex() == value
    assert len(raw) == len((content_type or "").encode("utf-8")) + 16


BOUND_FIELDS = [
    "method",
    "target",
    "recipient",
    "sender",
    "key id",
    "timestamp",
    "message id",
    "version",
    "direction",
]


def _hex(n: int) -> st.SearchStrategy[str]:
    return st.from_regex(rf"[0-9a-f]{{{n}}}", fullmatch=True)


@FAST
@given(
    field=st.sampled_from(BOUND_FIELDS),
    method=methods,
    target=targets,
    body=st.binary(max_size=64),
    data=st.data(),
)
def test_changing_any_bound_field_is_rejected(
    field: str, method: str, target: str, body: bytes, data: st.DataObject
) -> None:
    """Changing any one bound field of a sealed request makes opening fail."""
    sealed = ALPHA.seal_request(recipient="billing", method=method, target=target, body=body)
    receiver = envelope("billing")
    headers = dict(sealed.headers)
    change: dict[str, Any] = {}
    if field == "method":
        change["method"] = data.draw(methods.filter(lambda m: m != method))
    elif field == "target":
        change["target"] = data.draw(targets.filter(lambda t: t != target))
    elif field == "recipient":
        receiver = envelope("carol")  # holds every key billing holds
    elif field == "sender":
        headers[HEADER_SERVICE] = data.draw(st.sampled_from(["alias", "carol", "billing"]))
    elif field == "key id":
        kid = data.draw(st.one_of(st.just(KID_NEXT), _hex(16)))
        headers = with_seal_field(headers, "kid", kid)
    elif field == "timestamp":
        offset = data.draw(st.integers(min_value=-100_000, max_value=100_000))
        assume(offset != 0)
        headers = with_seal_field(headers, "ts", str(int(T0) + offset))
    elif field == "message id":
        headers = with_seal_field(headers, "id", data.draw(_hex(32)))
    elif field == "version":
        headers = with_seal_field(headers, "v", data.draw(st.text(max_size=3)))
    assume(headers != sealed.headers or change or field in {"recipient", "direction"})
    try:
        if field == "direction":
            receiver.open_response(
                sender="alpha",
                method=method,
                target=target,
                status=200,
                reply_to="",
                headers=headers,
                body=sealed.body,
            )
        else:
            open_request(
                receiver,
                sealed,
                change.get("method", method),
                change.get("target", target),
                headers=headers,
            )
    except IntegrityError:
        pass
    else:
        raise AssertionError(f"changed {field} and the message still opened")


@FAST
@given(
    field=st.sampled_from(["status", "reply_to", "sender", "method", "target", "direction"]),
    status=st.integers(min_value=100, max_value=599),
    data=st.data(),
)
def test_changing_any_bound_response_field_is_rejected(
    field: str, status: int, data: st.DataObject
) -> None:
    """Changing a response's status, request id, sender, method, target or direction fails."""
    request_id = "ab" * 16
    billing = envelope("billing")
    sealed = billing.seal_response(
        recipient="alpha", method="GET", target="/x", status=status, reply_to=request_id
    )
    facts: dict[str, Any] = {
        "sender": "billing",
        "method": "GET",
        "target": "/x",
        "status": status,
        "reply_to": request_id,
    }
    if field == "status":
        facts["status"] = data.draw(st.integers(100, 599).filter(lambda s: s != status))
    elif field == "reply_to":
        facts["reply_to"] = data.draw(_hex(32).filter(lambda r: r != request_id))
    elif field == "method":
        facts["method"] = data.draw(methods.filter(lambda m: m != "GET"))
    elif field == "target":
        facts["target"] = data.draw(targets.filter(lambda t: t != "/x"))
    elif field == "sender":
        headers = dict(sealed.headers)
        headers[HEADER_SERVICE] = facts["sender"] = "alias"
        sealed = Sealed(
            headers=headers, body=sealed.body, message_id=sealed.message_id, timestamp=0
        )
    receiver = envelope("alpha")
    try:
        if field == "direction":
            receiver.open_request(
                method="GET", target="/x", headers=sealed.headers, body=sealed.body
            )
        else:
            receiver.open_response(headers=sealed.headers, body=sealed.body, **facts)
    except IntegrityError:
        pass
    else:
        raise AssertionError(f"changed {field} and the response still opened")


def _field_values() -> st.SearchStrategy[str]:
    """Values for one seal field: garbage, and near misses of every field's form."""
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(["1", "2", "", " 1", "1 ", "0"]),
        _hex(16),
        _hex(32),
        st.integers(min_value=int(T0) - 120, max_value=int(T0) + 120).map(str),
        st.integers(min_value=-10, max_value=10**13).map(str),
        st.from_regex(r"[A-Za-z0-9_=-]{0,48}", fullmatch=True),
    )


# Seal-like headers: fields (documented or not) in any order and number, any values.
seal_like = st.lists(
    st.tuples(st.sampled_from([*SEAL_FIELDS, "x", "KID", ""]), _field_values()), max_size=7
).map(seal_value)


@FAST
@given(
    field=st.sampled_from(SEAL_FIELDS),
    value=_field_values(),
    method=methods,
    body=st.binary(max_size=64),
)
def test_a_real_seal_with_one_field_changed_opens_only_if_unchanged(
    field: str, value: str, method: str, body: bytes
) -> None:
    """Replacing one field of a real seal header with anything else is rejected, and only
    IntegrityError is ever raised; the same value put back opens."""
    sealed = ALPHA.seal_request(recipient="billing", method=method, target="/x", body=body)
    changed = value != seal_fields(sealed.headers[HEADER_SEAL])[field]
    headers = with_seal_field(sealed.headers, field, value)
    try:
        opened = open_request(envelope("billing"), sealed, method, "/x", headers=headers)
    except IntegrityError:
        assert changed, f"the untouched seal was rejected ({field}={value!r})"
    else:
        assert not changed, f"{field} changed to {value!r} and the message still opened"
        assert opened.body == body


@FAST
@given(
    headers=st.dictionaries(
        st.sampled_from([HEADER_ENCRYPTED, HEADER_SERVICE, HEADER_SEAL]),
        st.one_of(st.text(max_size=40), seal_like),
    ),
    body=st.binary(max_size=64),
)
def test_arbitrary_headers_and_body_only_raise_integrity_error(
    headers: dict[str, str], body: bytes
) -> None:
    """Garbage from the network is rejected with IntegrityError, never another exception."""
    try:
        envelope("billing").open_request(method="GET", target="/", headers=headers, body=body)
    except IntegrityError:
        pass
    else:
        raise AssertionError("garbage opened")


@FAST
@given(seal=seal_like, data=st.data())
def test_real_envelope_with_any_seal_like_header_only_raises_integrity_error(
    seal: str, data: st.DataObject
) -> None:
    """A real message whose seal header is replaced by any seal-like value never opens unless
    the value is the real one, and never raises anything but IntegrityError."""
    sealed = ALPHA.seal_request(recipient="billing", method="GET", target="/x", body=b"")
    real = seal_fields(sealed.headers[HEADER_SEAL])
    # Sometimes build the value from the real field values, in any order and number.
    if data.draw(st.booleans(), label="from real fields"):
        names = data.draw(st.lists(st.sampled_from(SEAL_FIELDS), max_size=7), label="names")
        seal = seal_value((name, real[name]) for name in names)
    headers = with_seal(sealed.headers, seal)
    try:
        open_request(envelope("billing"), sealed, "GET", "/x", headers=headers)
    except IntegrityError:
        assert seal != sealed.headers[HEADER_SEAL]
    else:
        assert seal == sealed.headers[HEADER_SEAL], f"{seal!r} opened"


@FAST
@given(
    version=st.sampled_from(["1", "2"]),
    fields=st.lists(st.text(max_size=40), min_size=10, max_size=10),
)
def test_message_aad_matches_the_specified_layout(version: str, fields: list[str]) -> None:
    """The envelope's cached associated data is byte for byte the specified layout of its
    version, for any text in any field (non-ASCII included), and the cache mixes up no routes."""
    fields = [version, *fields]
    assert built(fields) == spec_layout(fields)
    other = [*fields[:6], fields[6] + "x", *fields[7:]]
    assert built(other) == spec_layout(other)


def built(fields: list[str]) -> bytes:
    """The envelope's associated data for the eleven fields in protocol order."""
    version, kid, direction, sender, recipient, method, target, ts, mid, status, reply_to = fields
    binding = Binding._make(direction, sender, recipient, method, target, status, reply_to)
    return message_aad(version, kid, binding, ts, mid)


def spec_layout(fields: list[str]) -> bytes:
    """docs/protocol.md's layout, written out directly: label, eleven lengths, eleven fields."""
    encoded = [f.encode("utf-8") for f in fields]
    lengths = b"".join(len(f).to_bytes(4, "big") for f in encoded)
    label = b"mscomm-sync envelope" if fields[0] == "1" else b"mscomm-sync envelope v2"
    return label + lengths + b"".join(encoded)
