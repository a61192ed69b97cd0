"""Tests for mscomm_sync.envelope: sealing and opening one request or response."""

from __future__ import annotations

import base64
import inspect
import itertools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from support.seal import (
    SEAL_FIELDS,
    replace_seal_field,
    seal_fields,
    seal_value,
    with_seal,
    with_seal_field,
)
from werkzeug.test import EnvironBuilder

import mscomm_sync
from mscomm_sync.envelope import (
    DEFAULT_WINDOW,
    ENVELOPE_HEADERS,
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SEALED_BODY,
    HEADER_SERVICE,
    SEALED_CONTENT_TYPE,
    Envelope,
    Opened,
    Sealed,
    claimed_ids,
    target_from_endpoint,
    target_from_environ,
    target_from_url,
)
from mscomm_sync.envelope import envelope as envelope_module
from mscomm_sync.envelope import v1 as v1_module
from mscomm_sync.errors import ConfigurationError, IntegrityError, ReplayGapError
from mscomm_sync.keyring import Key, Keyring
from mscomm_sync.replay import MemoryReplayStore, SqliteReplayStore

T0 = 1_700_000_000.0


def key_text(seed: int) -> str:
    """Return a fixed, valid key (URL-safe base64 of 32 bytes) for ``seed``."""
    raw = bytes((seed * 37 + i * 11) % 256 for i in range(32))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


KEY_ALPHA = key_text(1)
KEY_BILLING = key_text(2)
KEY_CAROL = key_text(3)
KEY_NEW = key_text(4)


class FakeClock:
    """A wall clock that only moves when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_ring(**overrides: object) -> Keyring:
    """Return a keyring where ``alias`` shares alpha's key (to test sender binding)."""
    keys: dict[str, object] = {
        "alpha": KEY_ALPHA,
        "alias": KEY_ALPHA,
        "billing": KEY_BILLING,
        "carol": KEY_CAROL,
    }
    keys.update(overrides)
    return Keyring.from_mapping(keys)  # type: ignore[arg-type]


def make_envelope(
    service: str, clock: FakeClock | None = None, ring: Keyring | None = None, **kwargs: object
) -> Envelope:
    """Return an envelope whose clock and replay store share one fake clock.

    The store has been remembering for an hour, so only the window decides
    which past timestamps open (a new store refuses older ones: see
    test_a_new_replay_store_refuses_what_was_sealed_before_it).
    """
    clock = clock if clock is not None else FakeClock()
    return Envelope(
        service,
        keyring=ring if ring is not None else make_ring(),
        clock=clock,
        replay_store=store_made_at(clock, clock.now - 3600),
        **kwargs,  # type: ignore[arg-type]
    )


def store_made_at(clock: FakeClock, when: float) -> MemoryReplayStore:
    """A memory replay store on ``clock`` that began to remember at ``when``."""
    now, clock.now = clock.now, when
    try:
        return MemoryReplayStore(clock=clock)
    finally:
        clock.now = now


def seal_json(sender: Envelope, **kwargs: object) -> Sealed:
    """Seal a small JSON POST to billing."""
    args: dict[str, object] = {
        "recipient": "billing",
        "method": "POST",
        "target": "/invoices?customer=42",
        "body": b'{"amount": 10}',
        "content_type": "application/json",
    }
    args.update(kwargs)
    return sender.seal_request(**args)  # type: ignore[arg-type]


def open_json(receiver: Envelope, sealed: Sealed, **kwargs: object) -> Opened:
    """Open what :func:`seal_json` sealed, with overridable request facts."""
    args: dict[str, object] = {
        "method": "POST",
        "target": "/invoices?customer=42",
        "headers": dict(sealed.headers),
        "body": sealed.body,
    }
    args.update(kwargs)
    return receiver.open_request(**args)  # type: ignore[arg-type]


def with_header(sealed: Sealed, name: str, value: str) -> dict[str, str]:
    """Return the sealed headers with one header replaced."""
    headers = dict(sealed.headers)
    headers[name] = value
    return headers


@pytest.fixture
def clock() -> FakeClock:
    """A fake wall clock shared by sender and receiver."""
    return FakeClock()


@pytest.fixture
def alpha(clock: FakeClock) -> Envelope:
    """The calling service."""
    return make_envelope("alpha", clock)


@pytest.fixture
def billing(clock: FakeClock) -> Envelope:
    """The called service."""
    return make_envelope("billing", clock)


# -- cryptographic construction ---------------------------------------------


def test_same_plaintext_sealed_twice_differs(alpha: Envelope) -> None:
    """Two seals of one plaintext have different message ids and ciphertexts."""
    first, second = seal_json(alpha), seal_json(alpha)
    assert first.message_id != second.message_id
    assert first.body != second.body
    first_ct = seal_fields(first.headers[HEADER_SEAL])["ct"]
    assert first_ct != seal_fields(second.headers[HEADER_SEAL])["ct"]


def test_message_id_is_128_bits_in_hex(alpha: Envelope) -> None:
    """The seal's message id field is 32 lower-case hex digits (128 bits)."""
    sealed = seal_json(alpha)
    assert seal_fields(sealed.headers[HEADER_SEAL])["id"] == sealed.message_id
    assert len(bytes.fromhex(sealed.message_id)) == 16
    assert sealed.message_id == sealed.message_id.lower()


def _public_callables() -> Iterator[tuple[str, object]]:
    modules = [mscomm_sync, envelope_module, mscomm_sync.keyring, mscomm_sync.replay]
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr == "__init__" or not attr.startswith("_"):
                        func = getattr(member, "__func__", member)
                        if callable(func):
                            yield f"{module.__name__}.{name}.{attr}", func
            elif callable(obj):
                yield f"{module.__name__}.{name}", obj


def test_no_public_signature_accepts_a_nonce() -> None:
    """No public function or method takes a nonce or IV parameter."""
    checked = 0
    for qualname, func in _public_callables():
        try:
            params = inspect.signature(func).parameters  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        checked += 1
        for param in params:
            assert "nonce" not in param.lower(), qualname
            assert param.lower() not in {"iv", "initialization_vector"}, qualname
    assert checked > 10


def test_sealed_body_is_plaintext_size_plus_tag(alpha: Envelope) -> None:
    """The body is not compressed: sealed size is plaintext size plus the 16-byte tag."""
    plaintext = b"a" * 10_000
    sealed = seal_json(alpha, body=plaintext)
    assert len(sealed.body) == len(plaintext) + 16


def test_plaintext_does_not_appear_in_sealed_output(alpha: Envelope) -> None:
    """Neither the body nor its content type appear in the sealed body or headers."""
    sealed = seal_json(alpha, body=b"top-secret-invoice-amount", content_type="text/x-marker")
    assert b"secret" not in sealed.body
    assert not any("secret" in v or "x-marker" in v for v in sealed.headers.values())


def test_round_trip_returns_body_sender_and_key_id(alpha: Envelope, billing: Envelope) -> None:
    """Opening a sealed request gives back the body, verified sender and key id."""
    sealed = seal_json(alpha)
    opened = open_json(billing, sealed)
    assert opened.body == b'{"amount": 10}'
    assert opened.sender == "alpha"
    assert opened.key_id == Key.from_text(KEY_ALPHA, source="test").kid
    assert opened.message_id == sealed.message_id
    assert opened.timestamp == int(T0)


def test_reference_headers_are_kept(alpha: Envelope) -> None:
    """The reference headers X-Encrypted-Payload and X-Encryption-Service are sent."""
    sealed = seal_json(alpha)
    assert sealed.headers[HEADER_ENCRYPTED] == "true"
    assert sealed.headers[HEADER_SERVICE] == "alpha"


def test_envelope_headers_are_the_documented_three() -> None:
    """The envelope is exactly X-Encrypted-Payload, X-Encryption-Service and X-Mscomm-Seal."""
    assert ENVELOPE_HEADERS == (
        "X-Encrypted-Payload",
        "X-Encryption-Service",
        "X-Mscomm-Seal",
    )
    assert HEADER_SEAL == "X-Mscomm-Seal"
    assert HEADER_SEALED_BODY == "X-Mscomm-Sealed-Body"


def test_seal_header_has_the_documented_form(alpha: Envelope, billing: Envelope) -> None:
    """A sealed message carries only the three envelope headers and Content-Type, and the
    seal header is v=1;kid=...;ts=...;id=...;ct=... with the sealing facts."""
    sealed = seal_json(alpha)
    assert set(sealed.headers) == {*ENVELOPE_HEADERS, "Content-Type"}
    value = sealed.headers[HEADER_SEAL]
    kid = Key.from_text(KEY_ALPHA, source="test").kid
    ct = seal_fields(value)["ct"]
    assert value == f"v=1;kid={kid};ts={int(T0)};id={sealed.message_id};ct={ct}"
    # T is the sealed content type: UTF-8 "application/json" plus the 16-byte tag.
    assert len(bytes.fromhex(ct)) == 16 + 16
    assert set(ct) <= set("0123456789abcdef")
    assert opened_ok(billing, sealed)


def opened_ok(receiver: Envelope, sealed: Sealed, **kwargs: object) -> bool:
    """Open what :func:`seal_json` sealed and check it gave back the sealed body."""
    return open_json(receiver, sealed, **kwargs).body == b'{"amount": 10}'


# -- content type -------------------------------------------------------------


def test_content_type_travels_inside_the_seal(alpha: Envelope, billing: Envelope) -> None:
    """The original Content-Type is hidden in the headers and returned on open."""
    original = "application/json; charset=utf-8"
    sealed = seal_json(alpha, content_type=original)
    assert sealed.headers["Content-Type"] == SEALED_CONTENT_TYPE
    assert all("json" not in value for value in sealed.headers.values())
    assert open_json(billing, sealed).content_type == original


def test_missing_content_type_opens_as_none(alpha: Envelope, billing: Envelope) -> None:
    """A message sealed without a content type opens with content_type None."""
    sealed = seal_json(alpha, content_type=None)
    assert open_json(billing, sealed).content_type is None


def test_longest_content_type_round_trips(alpha: Envelope, billing: Envelope) -> None:
    """A 1024-character (ASCII) content type, the documented limit, seals and opens."""
    original = "application/" + "x" * (1024 - len("application/"))
    sealed = seal_json(alpha, content_type=original)
    assert open_json(billing, sealed).content_type == original


def test_content_type_over_the_limit_is_refused_when_sealing(alpha: Envelope) -> None:
    """A content type longer than 1024 characters is a configuration error, not a bad seal."""
    with pytest.raises(ConfigurationError):
        seal_json(alpha, content_type="x" * 1025)


def test_content_type_limit_counts_utf8_bytes_and_the_largest_opens(
    alpha: Envelope, billing: Envelope
) -> None:
    """The content-type limit counts UTF-8 bytes: 1024 seal and open, 1026 do not seal."""
    largest = "t/" + "\u00e9" * 511  # 2 + 1022 = 1024 UTF-8 bytes
    assert len(largest.encode("utf-8")) == 1024
    assert open_json(billing, seal_json(alpha, content_type=largest)).content_type == largest
    with pytest.raises(ConfigurationError):
        seal_json(alpha, content_type=largest + "\u00e9")


# -- GET without a body -------------------------------------------------------


def test_get_without_body_is_sealed_and_opens(alpha: Envelope, billing: Envelope) -> None:
    """A GET with no body still carries a seal (the 16-byte tag) and opens."""
    sealed = alpha.seal_request(recipient="billing", method="GET", target="/status")
    assert len(sealed.body) == 16
    assert sealed.headers[HEADER_ENCRYPTED] == "true"
    opened = billing.open_request(
        method="GET", target="/status", headers=sealed.headers, body=sealed.body
    )
    assert opened.body == b""


def test_get_without_body_binds_its_target(alpha: Envelope, billing: Envelope) -> None:
    """A body-less GET cannot be redirected to another path."""
    sealed = alpha.seal_request(recipient="billing", method="GET", target="/status")
    with pytest.raises(IntegrityError):
        billing.open_request(
            method="GET", target="/admin", headers=sealed.headers, body=sealed.body
        )


def test_get_without_body_is_replay_protected(alpha: Envelope, billing: Envelope) -> None:
    """A body-less GET opens once; the second delivery is rejected."""
    sealed = alpha.seal_request(recipient="billing", method="GET", target="/status")
    billing.open_request(method="GET", target="/status", headers=sealed.headers, body=sealed.body)
    with pytest.raises(IntegrityError):
        billing.open_request(
            method="GET", target="/status", headers=sealed.headers, body=sealed.body
        )


# -- bound metadata -------------------------------------------------------------


def test_changed_method_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """The HTTP method is bound."""
    with pytest.raises(IntegrityError):
        open_json(billing, seal_json(alpha), method="PUT")


@pytest.mark.parametrize(
    "target",
    ["/invoices?customer=43", "/invoices", "/invoices/?customer=42", "/other?customer=42"],
)
def test_changed_path_or_query_is_rejected(alpha: Envelope, billing: Envelope, target: str) -> None:
    """The path and the query are bound."""
    with pytest.raises(IntegrityError):
        open_json(billing, seal_json(alpha), target=target)


def test_changed_sender_header_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """The sender is bound, even when the claimed sender shares the real sender's key."""
    sealed = seal_json(alpha)
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_header(sealed, HEADER_SERVICE, "alias"))


def test_changed_timestamp_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """The timestamp is bound, even when the new one is inside the window."""
    sealed = seal_json(alpha)
    headers = with_seal_field(sealed.headers, "ts", str(int(T0) + 1))
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=headers)
    assert opened_ok(billing, sealed)  # the failure burnt nothing; the check is the binding


def test_timestamp_header_with_leading_zero_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """The ts field must be the bound decimal exactly (no leading zeros, per the spec)."""
    sealed = seal_json(alpha)
    ts = seal_fields(sealed.headers[HEADER_SEAL])["ts"]
    headers = with_seal_field(sealed.headers, "ts", "0" + ts)
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=headers)
    assert opened_ok(billing, sealed)


@pytest.mark.parametrize(
    "alter",
    [
        str.upper,
        lambda v: v + "0",
        lambda v: v + "==",
        lambda v: v[:4] + "\n" + v[4:],
        lambda v: v[:-2],
    ],
    ids=["upper-case", "odd-length", "padded", "embedded-newline", "truncated"],
)
def test_sealed_content_type_field_must_be_exact(
    alpha: Envelope, billing: Envelope, alter: object
) -> None:
    """Only the exact lower-case hex sent opens; any other spelling of the ct field is rejected."""
    sealed = seal_json(alpha, content_type="application/json")
    value = seal_fields(sealed.headers[HEADER_SEAL])["ct"]
    altered = alter(value)  # type: ignore[operator]
    assert altered != value
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_seal_field(sealed.headers, "ct", altered))
    assert open_json(billing, sealed).content_type == "application/json"


def test_changed_message_id_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """The message id is bound."""
    sealed = seal_json(alpha)
    other = format(int(sealed.message_id, 16) ^ 1, "032x")
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_seal_field(sealed.headers, "id", other))
    assert opened_ok(billing, sealed)


def test_changed_key_id_is_rejected(clock: FakeClock) -> None:
    """The key id is bound: a message cannot claim another of the sender's keys."""
    ring = make_ring(alpha=[KEY_ALPHA, KEY_NEW])
    alpha = make_envelope("alpha", clock, ring)
    billing = make_envelope("billing", clock, ring)
    sealed = seal_json(alpha)
    new_kid = Key.from_text(KEY_NEW, source="test").kid
    assert seal_fields(sealed.headers[HEADER_SEAL])["kid"] != new_kid
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_seal_field(sealed.headers, "kid", new_kid))
    assert opened_ok(billing, sealed)


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("2", "malformed envelope"),  # v2 exists, and has other fields
        ("0", "unsupported version"),
        ("01", "unsupported version"),
        ("1.0", "unsupported version"),
        ("", "unsupported version"),
    ],
)
def test_changed_version_field_is_rejected(
    alpha: Envelope,
    billing: Envelope,
    version: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A v1 message claiming another protocol version is rejected."""
    sealed = seal_json(alpha)
    headers = with_seal_field(sealed.headers, "v", version)
    envelope_log = caplog.at_level(logging.INFO, logger="mscomm_sync.envelope")
    with envelope_log, pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=headers)
    assert reason in caplog.text
    assert opened_ok(billing, sealed)


def test_version_is_bound_into_the_seal(
    alpha: Envelope, billing: Envelope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message sealed under another protocol version fails even with a relabelled header."""
    from mscomm_sync.envelope import crypto, v1

    # v1 sealed with a version field of "9" bound into its associated data.
    monkeypatch.setitem(crypto._AAD_LABELS, "9", crypto._AAD_LABELS["1"])
    monkeypatch.setattr(v1, "VERSION", "9")
    sealed = seal_json(alpha)
    monkeypatch.setattr(v1, "VERSION", "1")
    assert seal_fields(sealed.headers[HEADER_SEAL])["v"] == "9"
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_seal_field(sealed.headers, "v", "1"))


# -- the seal header's exact form ---------------------------------------------------


def _drop(name: str) -> object:
    def alter(value: str) -> str:
        return seal_value((k, v) for k, v in seal_fields(value).items() if k != name)

    return alter


def _order(*names: str) -> object:
    def alter(value: str) -> str:
        fields = seal_fields(value)
        return seal_value((name, fields[name]) for name in names)

    return alter


def _upper(name: str) -> object:
    def alter(value: str) -> str:
        return replace_seal_field(value, name, seal_fields(value)[name].upper())

    return alter


MALFORMED = "malformed envelope"
UNSUPPORTED = "unsupported version"

# Each alteration keeps every field's value (or drops one): a lenient parser would open them.
SEAL_FORMAT_CASES = {
    "extra-field-at-end": (lambda v: v + ";x=1", MALFORMED),
    "extra-field-in-middle": (lambda v: v.replace(";ts=", ";x=1;ts="), MALFORMED),
    "duplicate-field": (lambda v: v + ";v=1", MALFORMED),
    "trailing-separator": (lambda v: v + ";", MALFORMED),
    "missing-v": (_drop("v"), UNSUPPORTED),
    "missing-kid": (_drop("kid"), MALFORMED),
    "missing-ts": (_drop("ts"), MALFORMED),
    "missing-id": (_drop("id"), MALFORMED),
    "missing-ct": (_drop("ct"), MALFORMED),
    "kid-ts-swapped": (_order("v", "ts", "kid", "id", "ct"), MALFORMED),
    "id-ct-swapped": (_order("v", "kid", "ts", "ct", "id"), MALFORMED),
    "v-last": (_order("kid", "ts", "id", "ct", "v"), UNSUPPORTED),
    "reversed": (_order("ct", "id", "ts", "kid", "v"), UNSUPPORTED),
    "trailing-space": (lambda v: v + " ", MALFORMED),
    "trailing-tab": (lambda v: v + "\t", MALFORMED),
    "trailing-newline": (lambda v: v + "\n", MALFORMED),
    "trailing-crlf": (lambda v: v + "\r\n", MALFORMED),
    "space-after-separator": (lambda v: v.replace(";", "; "), MALFORMED),
    "space-around-equals": (lambda v: v.replace("kid=", "kid = "), MALFORMED),
    "leading-space": (lambda v: " " + v, UNSUPPORTED),
    "upper-case-kid": (_upper("kid"), MALFORMED),
    "upper-case-id": (_upper("id"), MALFORMED),
    "upper-case-name": (lambda v: v.replace(";kid=", ";KID="), MALFORMED),
    "comma-separators": (lambda v: v.replace(";", ","), UNSUPPORTED),
}


@pytest.mark.parametrize("case", sorted(SEAL_FORMAT_CASES))
def test_seal_header_in_any_other_form_is_rejected(
    case: str, alpha: Envelope, billing: Envelope, caplog: pytest.LogCaptureFixture
) -> None:
    """An extra, missing or reordered field, or white space, is rejected for its form alone."""
    alter, reason = SEAL_FORMAT_CASES[case]
    sealed = seal_json(alpha)
    value = sealed.headers[HEADER_SEAL]
    altered = alter(value)  # type: ignore[operator]
    assert altered != value
    envelope_log = caplog.at_level(logging.INFO, logger="mscomm_sync.envelope")
    with envelope_log, pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_seal(sealed.headers, altered))
    assert reason in caplog.text
    assert opened_ok(billing, sealed)  # the untouched seal opens: only the form was wrong


def test_seal_fields_in_any_other_order_are_rejected(alpha: Envelope, billing: Envelope) -> None:
    """Of the 120 orders of the five fields, only the documented one opens."""
    sealed = seal_json(alpha)
    fields = seal_fields(sealed.headers[HEADER_SEAL])
    accepted = []
    for order in itertools.permutations(SEAL_FIELDS):
        headers = with_seal(sealed.headers, seal_value((name, fields[name]) for name in order))
        try:
            open_json(billing, sealed, headers=headers)
        except IntegrityError:
            continue
        accepted.append(order)
        billing.replay_store = MemoryReplayStore(clock=FakeClock())
    assert accepted == [SEAL_FIELDS]


def test_missing_seal_header_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """Without X-Mscomm-Seal (or with it empty) nothing opens."""
    sealed = seal_json(alpha)
    without = {k: v for k, v in sealed.headers.items() if k != HEADER_SEAL}
    for headers in (without, with_seal(sealed.headers, "")):
        with pytest.raises(IntegrityError):
            open_json(billing, sealed, headers=headers)
    assert opened_ok(billing, sealed)


def test_seal_header_name_is_case_insensitive_with_a_case_insensitive_mapping(
    alpha: Envelope, billing: Envelope
) -> None:
    """Headers as a client library hands them over (case-insensitive) open."""
    from requests.structures import CaseInsensitiveDict

    sealed = seal_json(alpha)
    headers = CaseInsensitiveDict({k.lower(): v for k, v in sealed.headers.items()})
    assert opened_ok(billing, sealed, headers=headers)


# -- claimed_ids ---------------------------------------------------------------------


def test_claimed_ids_of_a_real_seal(alpha: Envelope) -> None:
    """claimed_ids returns the key id and message id a real seal header carries."""
    sealed = seal_json(alpha)
    kid = Key.from_text(KEY_ALPHA, source="test").kid
    assert claimed_ids(sealed.headers[HEADER_SEAL]) == (kid, sealed.message_id)


def _seal_reply(billing: Envelope, status: int = 200, reply_to: str = "0" * 32) -> Sealed:
    return billing.seal_response(
        recipient="alpha",
        method="POST",
        target="/invoices",
        status=status,
        reply_to=reply_to,
        body=b'{"ok": true}',
        content_type="application/json",
    )


def _open_reply(alpha: Envelope, sealed: Sealed, **kwargs: object) -> object:
    args: dict[str, object] = {
        "sender": "billing",
        "method": "POST",
        "target": "/invoices",
        "status": 200,
        "reply_to": "0" * 32,
        "headers": sealed.headers,
        "body": sealed.body,
    }
    args.update(kwargs)
    return alpha.open_response(**args)  # type: ignore[arg-type]


def test_response_round_trip(alpha: Envelope, billing: Envelope) -> None:
    """A response opens with the same status, request id, method and target."""
    opened = _open_reply(alpha, _seal_reply(billing))
    assert opened.body == b'{"ok": true}'  # type: ignore[attr-defined]
    assert opened.content_type == "application/json"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "change",
    [
        {"status": 201},
        {"reply_to": "1" * 32},
        {"method": "GET"},
        {"target": "/invoices?x=1"},
        {"sender": "alias"},
    ],
    ids=["status", "reply_to", "method", "target", "sender"],
)
def test_response_binds_status_request_id_and_request(
    alpha: Envelope, billing: Envelope, change: dict[str, object]
) -> None:
    """Changing a response's status, answered request, method, target or sender fails."""
    sealed = _seal_reply(billing)
    with pytest.raises(IntegrityError):
        _open_reply(alpha, sealed, **change)


def test_response_sender_header_must_match_expected_sender(
    alpha: Envelope, billing: Envelope
) -> None:
    """A response from another service than the one called is rejected."""
    carol = make_envelope("carol", FakeClock())
    sealed = _seal_reply(carol)
    with pytest.raises(IntegrityError):
        _open_reply(alpha, sealed)


# -- the canonical target is bound (its rules: test_target.py) ----------------------


def test_message_opens_behind_another_authority(alpha: Envelope, billing: Envelope) -> None:
    """A request sealed for http://a:1 opens when it arrives as http://b:2 (proxy, port map)."""
    sealed = alpha.seal_request(
        recipient="billing", method="GET", target=target_from_url("http://a:1/x?q=1")
    )
    environ = EnvironBuilder(path="/x?q=1", base_url="http://b:2/").get_environ()
    opened = billing.open_request(
        method="GET", target=target_from_environ(environ), headers=sealed.headers, body=sealed.body
    )
    assert opened.sender == "alpha"


def test_seal_with_escaped_ampersand_does_not_open_with_separator(
    alpha: Envelope, billing: Envelope
) -> None:
    """A request sealed for ?a=1%26b=2 does not open as ?a=1&b=2."""
    sealed = alpha.seal_request(
        recipient="billing", method="GET", target=target_from_url("http://h/x?a=1%26b=2")
    )
    environ = EnvironBuilder("http://h/x?a=1&b=2").get_environ()
    with pytest.raises(IntegrityError):
        billing.open_request(
            method="GET",
            target=target_from_environ(environ),
            headers=sealed.headers,
            body=sealed.body,
        )


def test_sealed_under_prefix_opens_in_mounted_app(alpha: Envelope, billing: Envelope) -> None:
    """A request for an endpoint of an app mounted at /prefix opens with that app's environ."""
    target = target_from_endpoint("/caf%C3%A9/a%20b", "x=%C3%A9")
    sealed = alpha.seal_request(recipient="billing", method="GET", target=target)
    environ = EnvironBuilder(path="/caf%C3%A9/a%20b?x=%C3%A9", base_url="http://h/prefix/")
    env = environ.get_environ()
    assert env["SCRIPT_NAME"] == "/prefix"
    opened = billing.open_request(
        method="GET", target=target_from_environ(env), headers=sealed.headers, body=sealed.body
    )
    assert opened.sender == "alpha"


# -- directions and recipients ---------------------------------------------------


def test_request_cannot_be_opened_as_response(alpha: Envelope, billing: Envelope) -> None:
    """A request reflected back to its sender does not open as a response."""
    sealed = billing.seal_request(recipient="alpha", method="POST", target="/invoices")
    with pytest.raises(IntegrityError):
        alpha.open_response(
            sender="billing",
            method="POST",
            target="/invoices",
            status=200,
            reply_to="",
            headers=sealed.headers,
            body=sealed.body,
        )


def test_response_cannot_be_opened_as_request(alpha: Envelope, billing: Envelope) -> None:
    """A response does not open as a request."""
    sealed = _seal_reply(billing)
    with pytest.raises(IntegrityError):
        alpha.open_request(
            method="POST", target="/invoices", headers=sealed.headers, body=sealed.body
        )


def test_message_for_billing_cannot_be_opened_by_carol(clock: FakeClock, alpha: Envelope) -> None:
    """A message sealed for B cannot be opened by C, though C holds the same keys."""
    carol = make_envelope("carol", clock)
    with pytest.raises(IntegrityError):
        open_json(carol, seal_json(alpha))


# -- freshness ----------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-(DEFAULT_WINDOW + 1), DEFAULT_WINDOW + 1, -3600, 86_400])
def test_timestamp_outside_window_is_rejected(skew: float) -> None:
    """Messages older or newer than the window are rejected."""
    alpha = make_envelope("alpha", FakeClock(T0))
    billing = make_envelope("billing", FakeClock(T0 - skew))
    with pytest.raises(IntegrityError):
        open_json(billing, seal_json(alpha))


@pytest.mark.parametrize("skew", [-(DEFAULT_WINDOW - 1), DEFAULT_WINDOW - 1, 0])
def test_timestamp_inside_window_is_accepted(skew: float) -> None:
    """Messages within the window (either direction) open."""
    alpha = make_envelope("alpha", FakeClock(T0))
    billing = make_envelope("billing", FakeClock(T0 - skew))
    assert open_json(billing, seal_json(alpha)).sender == "alpha"


@pytest.mark.parametrize(
    ("sealed_at", "opens"), [(-0.1, False), (0.2, False), (0.7, False), (1.0, True), (1.3, True)]
)
def test_a_new_replay_store_refuses_what_was_sealed_before_it(
    tmp_path: Path, sealed_at: float, opens: bool
) -> None:
    """A host-wide table made at T0 + 0.5 vouches from the next whole second, T0 + 1: a
    message whose timestamp is an earlier second is refused as a ReplayGapError, since it
    may have been sealed (and delivered) before the table existed: 0.2 was. Timestamps are
    whole seconds, so 0.7, after the table, looks the same and is refused too: it costs one
    retry, and a replay is never let through. From T0 + 1 on, messages open."""
    alpha = make_envelope("alpha", FakeClock(T0 + sealed_at))
    receiver_clock = FakeClock(T0 + 0.5)
    billing = Envelope(
        "billing",
        keyring=make_ring(),
        clock=receiver_clock,
        replay_store=SqliteReplayStore(tmp_path / "replay.sqlite3", clock=receiver_clock),
    )
    sealed = seal_json(alpha)
    if opens:
        assert open_json(billing, sealed).sender == "alpha"
        return
    with pytest.raises(ReplayGapError) as info:
        open_json(billing, sealed)
    assert (info.value.service, info.value.message_id) == ("alpha", sealed.message_id)
    assert info.value.not_before == T0 + 1
    # Not recorded: sealed afresh, a second later, it opens.
    again = seal_json(make_envelope("alpha", FakeClock(T0 + 1)))
    assert open_json(billing, again).sender == "alpha"


def test_window_is_configurable() -> None:
    """With window=5 a 6-second-old message is rejected and a 4-second-old one opens."""
    alpha = make_envelope("alpha", FakeClock(T0))
    receiver_clock = FakeClock(T0 + 6)
    billing = make_envelope("billing", receiver_clock, window=5)
    old = seal_json(alpha)
    with pytest.raises(IntegrityError):
        open_json(billing, old)
    receiver_clock.now = T0 + 4
    assert open_json(billing, old).sender == "alpha"


@pytest.mark.parametrize("window", [0, -1])
def test_window_must_be_positive(window: float) -> None:
    """A window of zero or less is a configuration error."""
    with pytest.raises(ConfigurationError):
        make_envelope("billing", window=window)


def test_replay_is_rejected(alpha: Envelope, billing: Envelope) -> None:
    """The second delivery of a request is rejected."""
    sealed = seal_json(alpha)
    open_json(billing, sealed)
    with pytest.raises(IntegrityError):
        open_json(billing, sealed)


def test_replay_is_rejected_with_default_store_and_injected_clock() -> None:
    """An envelope built with only an injected clock still rejects replays."""
    clock = FakeClock(T0)
    alpha = Envelope("alpha", keyring=make_ring(), clock=clock)
    billing = Envelope("billing", keyring=make_ring(), clock=clock)
    sealed = seal_json(alpha)
    open_json(billing, sealed)
    with pytest.raises(IntegrityError):
        open_json(billing, sealed)


def test_replay_is_rejected_until_the_message_is_stale(
    alpha: Envelope, billing: Envelope, clock: FakeClock
) -> None:
    """A replay stays rejected for the whole window, then fails as stale."""
    sealed = seal_json(alpha)
    open_json(billing, sealed)
    for now in (T0 + 1, T0 + DEFAULT_WINDOW - 1, T0 + DEFAULT_WINDOW + 5):
        clock.now = now
        with pytest.raises(IntegrityError):
            open_json(billing, sealed)


def test_forged_message_does_not_burn_the_real_id(alpha: Envelope, billing: Envelope) -> None:
    """A forgery carrying a real message's id is rejected and the real message still opens."""
    real = seal_json(alpha)
    forged_body = bytes([real.body[0] ^ 1]) + real.body[1:]
    with pytest.raises(IntegrityError):
        open_json(billing, real, body=forged_body)
    assert open_json(billing, real).message_id == real.message_id


def test_message_for_other_recipient_does_not_burn_the_id(
    alpha: Envelope, billing: Envelope
) -> None:
    """A failed open for any reason records nothing in the replay store."""
    real = seal_json(alpha)
    with pytest.raises(IntegrityError):
        open_json(billing, real, target="/elsewhere")
    assert len(billing.replay_store) == 0  # type: ignore[arg-type]
    open_json(billing, real)
    assert len(billing.replay_store) == 1  # type: ignore[arg-type]


def test_concurrent_duplicates_open_exactly_once(alpha: Envelope, billing: Envelope) -> None:
    """Of one message delivered by 16 threads at once, exactly one opens."""
    sealed = seal_json(alpha)
    threads_count = 16
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait()
        try:
            open_json(billing, sealed)
            result = "opened"
        except IntegrityError:
            result = "rejected"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=deliver) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["opened"] + ["rejected"] * (threads_count - 1)


# -- uniform failure ---------------------------------------------------------------


def _unknown_key_id(sealed: Sealed) -> dict[str, object]:
    return {"headers": with_seal_field(sealed.headers, "kid", "0123456789abcdef")}


def _without_seal_field(sealed: Sealed, name: str) -> dict[str, object]:
    fields = seal_fields(sealed.headers[HEADER_SEAL])
    del fields[name]
    return {"headers": with_seal(sealed.headers, seal_value(fields))}


FAILURES = {
    "bad tag": lambda s: {"body": s.body[:-1] + bytes([s.body[-1] ^ 0x80])},
    "stale": lambda s: {"headers": with_seal_field(s.headers, "ts", str(int(T0) - 3600))},
    "unknown key id": _unknown_key_id,
    "malformed": lambda s: {"headers": with_seal_field(s.headers, "id", "not-hex")},
    "missing field": lambda s: _without_seal_field(s, "ts"),
    "unsupported version": lambda s: {"headers": with_seal_field(s.headers, "v", "9")},
    "no usable key": lambda s: {"headers": with_header(s, HEADER_SERVICE, "stranger")},
    "not sealed": lambda s: {"headers": with_header(s, HEADER_ENCRYPTED, "false")},
    "wrong target": lambda s: {"target": "/elsewhere"},
}

# The text each rejection must leave in the mscomm_sync.envelope log.
LOGGED_REASON = {
    "bad tag": "bad tag",
    "stale": "stale",
    "unknown key id": "unknown key id",
    "malformed": "malformed envelope",
    "missing field": "malformed envelope",
    "unsupported version": "unsupported version",
    "no usable key": "no usable key",
    "not sealed": "not sealed",
    "wrong target": "bad tag",
    "replay": "replay",
    "wrong recipient": "bad tag",
    "too large": "too large",
}


def _provoke(case: str) -> IntegrityError:
    clock = FakeClock()
    alpha = make_envelope("alpha", clock)
    billing = make_envelope("billing", clock, max_body_size=1024)
    sealed = seal_json(alpha, body=b"x" * 2048 if case == "too large" else b"{}")
    with pytest.raises(IntegrityError) as info:
        if case == "replay":
            open_json(billing, sealed)
            open_json(billing, sealed)
        elif case == "wrong recipient":
            open_json(make_envelope("carol", clock), sealed)
        elif case == "too large":
            open_json(billing, sealed)
        else:
            open_json(billing, sealed, **FAILURES[case](sealed))  # type: ignore[no-untyped-call]
    return info.value


@pytest.mark.parametrize("case", sorted(LOGGED_REASON))
def test_every_rejection_raises_the_same_error(case: str) -> None:
    """Every reason raises exactly IntegrityError with one fixed message."""
    exc = _provoke(case)
    reference = _provoke("bad tag")
    assert type(exc) is IntegrityError
    assert str(exc) == str(reference) == IntegrityError.MESSAGE
    assert LOGGED_REASON[case] not in str(exc)


@pytest.mark.parametrize("case", sorted(LOGGED_REASON))
def test_rejection_reason_is_logged(case: str, caplog: pytest.LogCaptureFixture) -> None:
    """The reason for a rejection appears in a record of the mscomm_sync.envelope logger."""
    with caplog.at_level(logging.DEBUG, logger="mscomm_sync.envelope"):
        _provoke(case)
    messages = [r.getMessage() for r in caplog.records if r.name == "mscomm_sync.envelope"]
    assert any(LOGGED_REASON[case] in m for m in messages), messages


def test_rejection_log_does_not_contain_plaintext_or_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rejection log records never contain the key, the body or the content type."""
    clock = FakeClock()
    alpha = make_envelope("alpha", clock)
    billing = make_envelope("billing", clock)
    sealed = seal_json(alpha, body=b"plaintext-marker", content_type="type-marker")
    with caplog.at_level(logging.DEBUG), pytest.raises(IntegrityError):
        open_json(billing, sealed, target="/other")
    assert caplog.records
    for forbidden in ("plaintext-marker", "type-marker", KEY_ALPHA[:8], KEY_BILLING[:8]):
        assert forbidden not in caplog.text


# -- sizes ---------------------------------------------------------------------------


class _DecryptCounter:
    """Wraps AESGCM and counts decrypt calls."""

    calls = 0

    def __init__(self, key: bytes) -> None:
        self._inner = AESGCM(key)

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self._inner.encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        type(self).calls += 1
        return self._inner.decrypt(nonce, data, aad)


@pytest.fixture
def decrypt_counter(monkeypatch: pytest.MonkeyPatch) -> type[_DecryptCounter]:
    """Replace the envelope's AESGCM with a decrypt-counting wrapper."""
    counter = type("Counter", (_DecryptCounter,), {"calls": 0})
    monkeypatch.setattr(v1_module, "AESGCM", counter)
    return counter


def test_oversized_body_is_rejected_before_decryption(
    decrypt_counter: type[_DecryptCounter],
) -> None:
    """A body over max_body_size is rejected without any decryption."""
    clock = FakeClock()
    alpha = make_envelope("alpha", clock)
    billing = make_envelope("billing", clock, max_body_size=1024)
    sealed = seal_json(alpha, body=b"x" * 1025)
    with pytest.raises(IntegrityError):
        open_json(billing, sealed)
    assert decrypt_counter.calls == 0


def test_body_at_the_size_limit_opens(decrypt_counter: type[_DecryptCounter]) -> None:
    """A plaintext of exactly max_body_size bytes opens (and is decrypted)."""
    clock = FakeClock()
    alpha = make_envelope("alpha", clock)
    billing = make_envelope("billing", clock, max_body_size=1024)
    assert open_json(billing, seal_json(alpha, body=b"x" * 1024)).body == b"x" * 1024
    assert decrypt_counter.calls >= 1


def test_stale_message_is_rejected_before_decryption(
    decrypt_counter: type[_DecryptCounter],
) -> None:
    """A stale message is rejected without any decryption."""
    alpha = make_envelope("alpha", FakeClock(T0))
    billing = make_envelope("billing", FakeClock(T0 + 3600))
    with pytest.raises(IntegrityError):
        open_json(billing, seal_json(alpha))
    assert decrypt_counter.calls == 0


@pytest.mark.parametrize("size", [-1])
def test_max_body_size_must_not_be_negative(size: int) -> None:
    """A negative max_body_size is a configuration error."""
    with pytest.raises(ConfigurationError):
        make_envelope("billing", max_body_size=size)


# -- reprs ---------------------------------------------------------------------------


def test_opened_cannot_be_walked_as_a_sequence_or_changed(
    alpha: Envelope, billing: Envelope
) -> None:
    """Error reporters serialise tuples and lists field by field, so an Opened (which holds
    plaintext) is neither, has no __dict__ to dump, and refuses changes."""
    opened = open_json(billing, seal_json(alpha, body=b"plaintext-marker"))
    assert not isinstance(opened, (tuple, list))
    with pytest.raises(TypeError):
        iter(opened)  # type: ignore[call-overload]
    assert not hasattr(opened, "__dict__")
    with pytest.raises(AttributeError):
        opened.body = b"changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del opened.sender
    assert opened.body == b"plaintext-marker"
    assert (opened.sender, opened.content_type) == ("alpha", "application/json")


def test_reprs_show_no_plaintext_or_key(alpha: Envelope, billing: Envelope) -> None:
    """Sealed, Opened and Envelope reprs show neither plaintext nor key material."""
    sealed = seal_json(alpha, body=b"plaintext-marker")
    opened = open_json(billing, sealed)
    for text in (repr(sealed), repr(opened), repr(alpha), repr(billing)):
        assert "plaintext-marker" not in text
        assert KEY_ALPHA[:8] not in text
        assert KEY_BILLING[:8] not in text


@pytest.mark.parametrize("window", [float("nan"), float("inf"), True])
def test_a_window_that_would_switch_freshness_off_is_refused(window: float) -> None:
    """NaN or infinity would let any old message open (and, with NaN, never expire from the
    replay store): a ConfigurationError naming the window."""
    with pytest.raises(ConfigurationError) as info:
        make_envelope("billing", window=window)
    assert info.value.variable == "window"


@pytest.mark.parametrize("flag", ["TRUE", "True", " true", "true ", "1", "yes"])
def test_the_sealed_flag_is_exactly_true(alpha: Envelope, billing: Envelope, flag: str) -> None:
    """X-Encrypted-Payload must be exactly "true", as the protocol spells it."""
    sealed = seal_json(alpha)
    with pytest.raises(IntegrityError):
        open_json(billing, sealed, headers=with_header(sealed, HEADER_ENCRYPTED, flag))
    assert opened_ok(billing, sealed)


@pytest.mark.parametrize(
    ("offset", "opens"),
    [
        (60, True),
        (61, False),
        (60.9, True),  # the receiver's now is T0 + 60 in whole seconds
        (-60, True),
        (-61, False),
        (-60.5, False),  # the receiver's now is T0 - 61 in whole seconds
        (0.0, True),
    ],
)
def test_freshness_is_whole_seconds_the_same_both_ways(offset: float, opens: bool) -> None:
    """With the default 60 s window a message opens iff now - 60 <= ts <= now + 60, with
    now the receiver's clock in whole seconds: the past and the future alike."""
    alpha = make_envelope("alpha", FakeClock(T0))
    billing = make_envelope("billing", FakeClock(T0 + offset))
    sealed = seal_json(alpha)
    if opens:
        assert opened_ok(billing, sealed)
    else:
        with pytest.raises(IntegrityError):
            open_json(billing, sealed)
