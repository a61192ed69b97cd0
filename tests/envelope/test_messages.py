"""Tests for mscomm_sync.envelope.messages: Binding, Sealed and Opened are immutable, discreet."""

from __future__ import annotations

import pytest

from mscomm_sync.envelope.messages import REQUEST, RESPONSE, Binding, Opened, Sealed

MID = "00112233445566778899aabbccddeeff"
BODY = b"plaintext-marker"


def binding(status: str = "", reply_to: str = "") -> Binding:
    """A request (or, with a status, response) binding with a target that carries data."""
    direction = RESPONSE if status else REQUEST
    return Binding._make(
        direction, "orders", "billing", "POST", "/pay?card=4111-secret", status, reply_to
    )


def sealed() -> Sealed:
    """A sealed message whose body holds a marker."""
    return Sealed(headers={"X-Encrypted-Payload": "true"}, body=BODY, message_id=MID, timestamp=7)


def opened() -> Opened:
    """An opened message whose body and content type hold markers."""
    return Opened(
        sender="orders",
        body=BODY,
        content_type="text/x-marker",
        message_id=MID,
        key_id="0123456789abcdef",
        timestamp=7,
    )


VALUES = {"Binding": binding, "Sealed": sealed, "Opened": opened}


def test_binding_fields_fill_in_protocol_order() -> None:
    """Binding._make takes direction, sender, recipient, method, target, status, reply_to."""
    made = Binding._make("response", "billing", "orders", "GET", "/x", "201", MID)
    assert (
        made.direction,
        made.sender,
        made.recipient,
        made.method,
        made.target,
        made.status,
        made.reply_to,
    ) == ("response", "billing", "orders", "GET", "/x", "201", MID)


def test_sealed_keeps_what_it_was_given() -> None:
    """A Sealed holds its headers, body, message id and timestamp."""
    value = sealed()
    assert (value.headers, value.body, value.message_id, value.timestamp) == (
        {"X-Encrypted-Payload": "true"},
        BODY,
        MID,
        7,
    )


def test_sealed_fields_fill_in_order_when_made_positionally() -> None:
    """Sealed._make (the envelope's fast path) fills the same fields as the constructor."""
    made = Sealed._make({}, (BODY,), MID, 7, "1", "0123456789abcdef")
    assert vars_of(made) == vars_of(Sealed({}, BODY, MID, 7, "1", "0123456789abcdef"))
    assert made.body == BODY and made.length == len(BODY)


def test_a_sealed_body_in_chunks_joins_in_order() -> None:
    """A v2 message's chunks (sealed fields, then body) read as one body, in order."""
    made = Sealed._make({}, (b"head", b"body"), MID, 7, "2", "a" * 16 + "-" + "b" * 16)
    assert (made.body, made.length) == (b"headbody", 8)


def test_opened_keeps_what_it_was_given() -> None:
    """An Opened holds its sender, body, content type, message id, key id and timestamp."""
    value = opened()
    assert (
        value.sender,
        value.body,
        value.content_type,
        value.message_id,
        value.key_id,
        value.timestamp,
    ) == ("orders", BODY, "text/x-marker", MID, "0123456789abcdef", 7)


def test_opened_fields_fill_in_order_when_made_positionally() -> None:
    """Opened._make (the envelope's fast path) fills the same fields as the constructor."""
    args = ("orders", BODY, None, MID, "0123456789abcdef", 7, "2", (("a", "b"),))
    assert vars_of(Opened._make(*args)) == vars_of(Opened(*args))


def vars_of(record: Sealed | Opened) -> dict[str, object]:
    """Return a record's fields by name."""
    return {name: getattr(record, name) for name in record._fields}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_fields_cannot_be_changed(kind: str) -> None:
    """Assigning to any field raises AttributeError and leaves the value as it was."""
    value = VALUES[kind]()
    for name in value._fields:
        before = getattr(value, name)
        with pytest.raises(AttributeError):
            setattr(value, name, "changed")
        assert getattr(value, name) is before


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_fields_cannot_be_deleted(kind: str) -> None:
    """Deleting any field raises AttributeError."""
    value = VALUES[kind]()
    for name in value._fields:
        with pytest.raises(AttributeError):
            delattr(value, name)


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_no_new_attribute_can_be_added(kind: str) -> None:
    """A message value has no __dict__: no attribute can be added to it."""
    value = VALUES[kind]()
    assert not hasattr(value, "__dict__")
    with pytest.raises(AttributeError):
        value.extra = 1  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_message_values_are_not_sequences(kind: str) -> None:
    """Error reporters walk tuples field by field: no message value is one, or iterable."""
    value = VALUES[kind]()
    assert not isinstance(value, (tuple, list))
    with pytest.raises(TypeError):
        iter(value)  # type: ignore[call-overload]


def test_binding_repr_is_short_and_leaves_out_the_target() -> None:
    """A request's binding repr names direction, parties, method and no status; not the target
    (its query may carry data)."""
    assert repr(binding()) == "<Binding request orders->billing POST status=->"


def test_response_binding_repr_shows_its_status_but_not_the_request_id() -> None:
    """A response's binding repr shows its status and leaves out the answered id."""
    text = repr(binding(status="201", reply_to=MID))
    assert text == "<Binding response orders->billing POST status=201>"


def test_sealed_repr_shows_id_and_size_but_no_body() -> None:
    """A Sealed repr gives its id and byte count, never its bytes."""
    assert repr(sealed()) == f"<Sealed v1 id={MID} bytes={len(BODY)}>"


def test_opened_repr_shows_sender_id_and_size_but_no_body_or_type() -> None:
    """An Opened repr gives sender, id and byte count, never the plaintext or its type."""
    text = repr(opened())
    assert text == f"<Opened v1 sender='orders' id={MID} bytes={len(BODY)}>"


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_no_repr_or_str_shows_plaintext(kind: str) -> None:
    """Neither repr() nor str() of a message value shows the body or the bound target."""
    value = VALUES[kind]()
    for text in (repr(value), str(value)):
        assert "marker" not in text
        assert "secret" not in text


def test_directions_are_the_protocol_words() -> None:
    """The two directions are spelled as docs/protocol.md binds them."""
    assert (REQUEST, RESPONSE) == ("request", "response")
