"""Protocol v2: only the two services of a pair can seal what passes between them.

Three services: orders (A) calls billing (B), and ledger (C), an insider,
holds its own private key and every public key. Forgeries are made with an
attacker's own sealer (tests/support/forge.py), written from docs/protocol.md.
"""

from __future__ import annotations

import pytest
from support.fleet import Fleet
from support.forge import forge_v2, key_id_v2

from mscomm_sync.envelope import Envelope, Sealed
from mscomm_sync.errors import ConfigurationError, IntegrityError
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.trust import Identity, TrustStore

NAMES = ("orders", "billing", "ledger")


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(*NAMES)


@pytest.fixture
def orders(fleet: Fleet) -> Envelope:
    return fleet.envelope("orders", "billing", "ledger")


@pytest.fixture
def billing(fleet: Fleet) -> Envelope:
    return fleet.envelope("billing", "orders", "ledger")


def request(
    sender: Envelope, headers: list[tuple[str, str]] | None = None, body: bytes = b'{"a":1}'
) -> Sealed:
    return sender.seal_request(
        recipient="billing",
        method="POST",
        target="/charge",
        body=body,
        content_type="application/json",
        headers=headers,
    )


def open_request(receiver: Envelope, sealed: Sealed, target: str = "/charge") -> object:
    return receiver.open_request(
        method="POST", target=target, headers=sealed.headers, body=sealed.body
    )


def test_round_trip_keeps_body_type_and_headers_in_order(
    orders: Envelope, billing: Envelope
) -> None:
    """A v2 request opens to its body, content type and end-to-end headers, repeats and order
    kept; its answer, sealed with the same pair, opens to the answer's."""
    fields = [("idempotency-key", "charge-1"), ("x-note", "a"), ("x-note", "b")]
    sealed = request(orders, fields)
    assert sealed.version == "2" and len(sealed.chunks) == 2
    opened = open_request(billing, sealed)
    assert (opened.version, opened.sender, opened.body) == ("2", "orders", b'{"a":1}')
    assert (opened.content_type, list(opened.headers)) == ("application/json", fields)
    answer = billing.seal_response(
        recipient="orders", method="POST", target="/charge", status=201,
        reply_to=opened.message_id, body=b"ok", content_type="text/plain",
        headers=[("etag", '"7"')], request=opened,
    )  # fmt: skip
    reply = orders.open_response(
        sender="billing", method="POST", target="/charge", status=201,
        reply_to=sealed.message_id, headers=answer.headers, body=answer.body, request=sealed,
    )  # fmt: skip
    assert (reply.body, reply.content_type, reply.headers) == (
        b"ok",
        "text/plain",
        (("etag", '"7"'),),
    )


def test_v2_is_chosen_when_both_sides_have_keys_and_v1_otherwise(fleet: Fleet) -> None:
    """With its own private key and the recipient's public key a caller seals v2; without the
    public key but with both shared keys, v1; with neither, a ConfigurationError before anything
    is sealed, naming what is missing."""
    shared = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    both = Envelope("orders", keyring=shared, identity=fleet.identity("orders"),
                    trust=fleet.trust("billing"))  # fmt: skip
    assert request(both).version == both.request_version("billing") == "2"
    no_public = Envelope("orders", keyring=shared, identity=fleet.identity("orders"),
                         trust=fleet.trust())  # fmt: skip
    assert request(no_public).version == no_public.request_version("billing") == "1"
    only_v1 = Envelope("orders", keyring=shared, identity=fleet.identity("orders"),
                       trust=fleet.trust("billing"), versions={"1"})  # fmt: skip
    assert request(only_v1).version == only_v1.request_version("billing") == "1"
    neither = Envelope("orders", keyring=Keyring.from_mapping({}),
                       identity=fleet.identity("orders"), trust=fleet.trust())  # fmt: skip
    assert neither.request_version("billing") is None
    with pytest.raises(ConfigurationError, match="cannot seal a request for 'billing'") as caught:
        request(neither)
    for named in ("MSCOMM_TRUST", "BILLING_PUBLIC_KEY", "ORDERS_PRIVATE_KEY",
                  "ORDERS_PRIVATE_KEY_FILE", "ORDERS_ENCRYPTION_KEY"):  # fmt: skip
        assert named in str(caught.value)


def test_an_insider_cannot_forge_a_request_between_the_pair(
    fleet: Fleet, billing: Envelope
) -> None:
    """ledger, with its own private key and every public key, cannot seal a request billing
    accepts as orders', whatever key ids it claims."""
    for sender_kid in (key_id_v2(fleet.public("orders")), None):
        forged = forge_v2(
            private=fleet.private("ledger"), peer_public=fleet.public("billing"),
            sender="orders", recipient="billing", method="POST", target="/charge",
            body=b"{}", sender_kid=sender_kid,
        )  # fmt: skip
        with pytest.raises(IntegrityError):
            billing.open_request(method="POST", target="/charge", headers=forged.headers,
                                 body=forged.body)  # fmt: skip
    # The forger is right when it holds the right key: orders' own key opens.
    honest = forge_v2(
        private=fleet.private("orders"), peer_public=fleet.public("billing"), sender="orders",
        recipient="billing", method="POST", target="/charge", body=b"{}",
    )  # fmt: skip
    assert billing.open_request(method="POST", target="/charge", headers=honest.headers,
                                body=honest.body).sender == "orders"  # fmt: skip


def test_an_insider_cannot_forge_the_reply_either(fleet: Fleet, orders: Envelope) -> None:
    """ledger cannot seal an answer orders accepts as billing's to orders' own request."""
    sealed = request(orders)
    forged = forge_v2(
        private=fleet.private("ledger"), peer_public=fleet.public("orders"), sender="billing",
        recipient="orders", method="POST", target="/charge", body=b"paid", direction="response",
        status="200", reply_to=sealed.message_id,
        sender_kid=key_id_v2(fleet.public("billing")),
    )  # fmt: skip
    with pytest.raises(IntegrityError):
        orders.open_response(
            sender="billing", method="POST", target="/charge", status=200,
            reply_to=sealed.message_id, headers=forged.headers, body=forged.body, request=sealed,
        )  # fmt: skip


def test_a_request_reflected_back_is_not_an_answer(orders: Envelope) -> None:
    """orders' own request, sent back to it as billing's answer, does not open."""
    sealed = request(orders)
    with pytest.raises(IntegrityError):
        orders.open_response(
            sender="billing", method="POST", target="/charge", status=200,
            reply_to=sealed.message_id, headers={**sealed.headers,
            "X-Encryption-Service": "billing"}, body=sealed.body, request=sealed,
        )  # fmt: skip


def test_a_replayed_v2_request_opens_once(orders: Envelope, billing: Envelope) -> None:
    """The replay store refuses a v2 request's second delivery."""
    sealed = request(orders)
    open_request(billing, sealed)
    with pytest.raises(IntegrityError):
        open_request(billing, sealed)


def test_an_answer_must_use_its_requests_pair(fleet: Fleet, orders: Envelope) -> None:
    """An answer sealed by billing under another of its keys than the request named is refused
    (the pair binds the two messages)."""
    from mscomm_sync.envelope import Opened

    sealed = request(orders)
    new = fleet.rotate("billing")
    other = fleet.envelope("billing", "orders")
    opened = other.open_request(method="POST", target="/charge", headers=sealed.headers,
                                body=sealed.body)  # fmt: skip
    # billing answers under its new key, not the one orders sealed to.
    elsewhere = Opened._make(
        opened.sender, b"", None, opened.message_id, f"{opened.key_id[:16]}-{new.kid}",
        opened.timestamp, "2", (),
    )  # fmt: skip
    answer = other.seal_response(
        recipient="orders", method="POST", target="/charge", status=200,
        reply_to=opened.message_id, body=b"ok", request=elsewhere,
    )  # fmt: skip
    assert answer.pair == f"{new.kid}-{opened.key_id[:16]}"
    with pytest.raises(IntegrityError):
        orders.open_response(
            sender="billing", method="POST", target="/charge", status=200,
            reply_to=sealed.message_id, headers=answer.headers, body=answer.body, request=sealed,
        )  # fmt: skip


def test_rotation_needs_no_other_secret(fleet: Fleet) -> None:
    """billing adds a new key: callers keep sealing to the old public key until the trust
    material lists the new one first; billing opens both meanwhile. No caller's secret changes."""
    old_public = fleet.public("billing")
    fleet.rotate("billing")
    billing = fleet.envelope("billing", "orders")
    # A caller that still trusts only the old public key (listed alone).
    env = {"BILLING_PUBLIC_KEY": fleet.keys["billing"][1].public.text}
    caller = Envelope("orders", identity=fleet.identity("orders"),
                      trust=TrustStore(environ=env), replay_store=MemoryReplayStore())  # fmt: skip
    sealed = request(caller)
    assert sealed.pair.endswith(key_id_v2(old_public))
    assert open_request(billing, sealed).sender == "orders"
    # The trust material now lists the new key first: callers seal to it.
    newer = fleet.envelope("orders", "billing")
    assert request(newer).pair.endswith(fleet.keys["billing"][0].kid)
    assert open_request(billing, request(newer)).sender == "orders"


def test_an_expired_public_key_is_not_trusted(fleet: Fleet, orders: Envelope) -> None:
    """A key past its not_after is neither sealed to nor accepted."""
    from mscomm_sync.trust import PublicKey

    class Store(TrustStore):
        def _all_keys(self, service: str) -> tuple[PublicKey, ...]:
            return tuple(
                PublicKey.from_bytes(k.raw, not_after=1.0) for k in super()._all_keys(service)
            )

    sealed = request(orders)
    billing = Envelope("billing", identity=fleet.identity("billing"),
                       trust=Store(environ=fleet.environ("orders")),
                       replay_store=MemoryReplayStore())  # fmt: skip
    with pytest.raises(IntegrityError):
        open_request(billing, sealed)


def test_a_service_that_speaks_only_v2_refuses_v1(fleet: Fleet) -> None:
    """versions={"2"}: a well-sealed v1 request is refused as not allowed."""
    shared = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    v1_caller = Envelope("orders", keyring=shared, identity=Identity("orders", environ={}),
                         trust=TrustStore(environ={}), versions={"1"})  # fmt: skip
    only_v2 = Envelope("billing", keyring=shared, identity=fleet.identity("billing"),
                       trust=fleet.trust("orders"), versions={"2"})  # fmt: skip
    sealed = request(v1_caller)
    assert sealed.version == "1"
    with pytest.raises(IntegrityError):
        open_request(only_v2, sealed)


def test_headers_that_cannot_be_sealed_fail_before_sealing(orders: Envelope) -> None:
    """A header name that is no lower-case token, or a value with a line break, is refused."""
    for bad in ([("Bad Name", "x")], [("x-ok", "a\r\nInjected: 1")]):
        with pytest.raises(ConfigurationError):
            request(orders, bad)


def test_a_tampered_sealed_header_block_is_refused(orders: Envelope, billing: Envelope) -> None:
    """Flipping one bit of the sealed header fields (or the body) breaks the tag."""
    sealed = request(orders, [("x-a", "1")])
    body = bytearray(sealed.body)
    body[3] ^= 1
    with pytest.raises(IntegrityError):
        billing.open_request(method="POST", target="/charge", headers=sealed.headers,
                             body=bytes(body))  # fmt: skip


def test_a_version_passed_in_is_used_only_where_it_is_allowed(fleet: Fleet) -> None:
    """seal_request(version=) takes the version request_version gave; a version this envelope
    does not allow (or None) is decided again, so a caller cannot force v1 where only v2 is."""
    shared = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    both = Envelope("orders", keyring=shared, identity=fleet.identity("orders"),
                    trust=fleet.trust("billing"))  # fmt: skip
    only_v2 = Envelope("orders", keyring=shared, identity=fleet.identity("orders"),
                       trust=fleet.trust("billing"), versions={"2"})  # fmt: skip

    def seal(envelope: Envelope, version: str | None) -> str:
        sealed = envelope.seal_request(
            recipient="billing", method="POST", target="/charge", body=b"{}", version=version
        )
        return sealed.version

    assert [seal(both, v) for v in ("1", "2", None, "3")] == ["1", "2", "2", "2"]
    assert [seal(only_v2, v) for v in ("1", "2", None)] == ["2", "2", "2"]
