"""Protocol v2's keys: text forms, key ids, errors that name a source and never a value."""

from __future__ import annotations

import base64
import copy
import hashlib
import pickle
from typing import Callable

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.trust.keys import (
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_id,
    parse_key,
)


def test_public_key_text_round_trips() -> None:
    """A public key's text parses back to the same 32 bytes and key id."""
    key = generate_private_key().public
    again = PublicKey.from_text(key.text, source="test")
    assert again.raw == key.raw
    assert again.kid == key.kid


def test_private_key_text_round_trips() -> None:
    """A private key's text parses back to a key with the same public half."""
    key = generate_private_key()
    again = PrivateKey.from_text(key.text(), source="test")
    assert again.public.raw == key.public.raw
    assert again.text() == key.text()


def test_key_text_is_43_url_safe_characters() -> None:
    """Both halves are written as 43 URL-safe base64 characters without padding."""
    key = generate_private_key()
    for text in (key.text(), key.public.text):
        assert len(text) == 43
        assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert len(base64.urlsafe_b64decode(text + "=")) == 32


def test_padding_and_surrounding_white_space_are_accepted() -> None:
    """One trailing '=' and white space around the key (a file's newline) are accepted."""
    key = generate_private_key().public
    assert parse_key(f"  {key.text}=\n", source="test", what="public key") == key.raw


def test_key_id_is_the_documented_hash() -> None:
    """A key id is the first 16 hex digits of SHA-256 over the label and the public key."""
    key = generate_private_key().public
    expected = hashlib.sha256(b"mscomm-sync key id v2\x00" + key.raw).hexdigest()[:16]
    assert key_id(key.raw) == expected
    assert key.kid == expected


def test_the_private_key_derives_its_public_half() -> None:
    """The public half of a parsed private key is the X25519 public key of its bytes."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = generate_private_key()
    raw = base64.urlsafe_b64decode(key.text() + "=")
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    assert key.public.raw == public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # 42 characters
        lambda t: t + "A",  # 44 characters
        lambda t: "+" + t[1:],  # the standard alphabet
        lambda t: t[:20] + " " + t[21:],  # white space inside
        lambda t: t + "==",  # too much padding
    ],
    ids=["short", "long", "standard-alphabet", "space-inside", "double-padding"],
)
def test_a_malformed_private_key_names_its_source_not_its_value(
    mangle: Callable[[str], str],
) -> None:
    """A malformed private key's error names the variable, and no part of the value."""
    text = mangle(generate_private_key().text())
    with pytest.raises(ConfigurationError) as caught:
        PrivateKey.from_text(text, source="BILLING_PRIVATE_KEY")
    message = str(caught.value)
    assert "BILLING_PRIVATE_KEY" in message
    assert caught.value.variable == "BILLING_PRIVATE_KEY"
    assert text.strip()[5:15] not in message
    assert "private key" in message


def test_a_malformed_public_key_names_its_source() -> None:
    """A public key that does not parse says where it came from."""
    with pytest.raises(ConfigurationError) as caught:
        PublicKey.from_text("not-a-key", source="ORDERS_PUBLIC_KEY (service 'orders')")
    assert "ORDERS_PUBLIC_KEY (service 'orders')" in str(caught.value)
    assert "public key" in str(caught.value)
    assert "not-a-key" not in str(caught.value)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_keys_of_the_wrong_length_are_refused(length: int) -> None:
    """Raw keys must be exactly 32 bytes, public and private."""
    with pytest.raises(ConfigurationError):
        PublicKey.from_bytes(bytes(length))
    with pytest.raises(ConfigurationError):
        PrivateKey.from_bytes(b"\x01" * length)


def test_reprs_never_show_a_private_key() -> None:
    """repr and str of a private key show its key id, and neither half of the key."""
    key = generate_private_key()
    for shown in (repr(key), str(key), repr(key.public), f"{key!r}"):
        assert key.text() not in shown
        assert key.text()[:12] not in shown
        assert key.kid in shown
    assert key.public.text not in repr(key)


def test_a_private_key_is_never_pickled() -> None:
    """Pickling or copying a private key raises instead of copying the secret."""
    key = generate_private_key()
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_exchange_gives_both_sides_the_same_secret() -> None:
    """X25519: A's private with B's public equals B's private with A's public."""
    a, b, c = generate_private_key(), generate_private_key(), generate_private_key()
    assert a.exchange(b.public) == b.exchange(a.public)
    assert a.exchange(b.public) != a.exchange(c.public)


def test_exchange_refuses_a_low_order_point() -> None:
    """A peer key that forces an all-zero shared secret is refused with ValueError."""
    with pytest.raises(ValueError):
        generate_private_key().exchange(PublicKey.from_bytes(bytes(32)))


def test_not_after_is_inclusive() -> None:
    """A key is trusted up to and including its not_after second, and not after it."""
    raw = generate_private_key().public.raw
    key = PublicKey.from_bytes(raw, not_after=1000.0)
    assert key.valid_at(1000.0)
    assert not key.valid_at(1000.5)
    assert PublicKey.from_bytes(raw).valid_at(1e12)


def test_generated_keys_are_fresh() -> None:
    """Two generated keys differ."""
    assert generate_private_key().text() != generate_private_key().text()
