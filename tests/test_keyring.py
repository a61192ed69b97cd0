"""Tests for mscomm_sync.keyring: where keys come from, their format, rotation, errors."""

from __future__ import annotations

import base64
import logging
import re
import traceback

import pytest
from support.seal import seal_fields

from mscomm_sync.envelope import HEADER_SEAL, Envelope
from mscomm_sync.envelope import v1 as envelope_module
from mscomm_sync.errors import ConfigurationError, IntegrityError, MscommError
from mscomm_sync.keyring import Key, Keyring, ServiceKeys, env_var_name, generate_key
from mscomm_sync.replay import MemoryReplayStore

T0 = 1_700_000_000.0
RAW_OLD = bytes(range(32))
RAW_NEW = bytes(range(100, 132))
KEY_OLD = base64.urlsafe_b64encode(RAW_OLD).rstrip(b"=").decode()
KEY_NEW = base64.urlsafe_b64encode(RAW_NEW).rstrip(b"=").decode()
KEY_BILLING = base64.urlsafe_b64encode(bytes(range(200, 232))).rstrip(b"=").decode()

# Distinctive rejected values: none of their 4-character pieces occurs in ordinary text.
TOO_SHORT = "Qz7XvK9wPj2RtY5mNb8L"  # valid base64 of 15 bytes
TOO_LONG = base64.urlsafe_b64encode(bytes(range(7, 55))).decode()  # 48 bytes
NOT_BASE64 = "Qz7X!vK9w#Pj2R$tY5mN%b8L^cW4xH&fG6s*Jd3V(kT1"
STANDARD_ALPHABET = "Qz7X+vK9w/Pj2R+tY5mN/b8LcW4xHfG6sJd3VkT1aB9="  # '+' '/' are not URL-safe
BAD_PADDING = "Qz7XvK9wPj2RtY5mNb8LcW4xHfG6sJd3VkT1aB9Zq=="
MALFORMED = [TOO_SHORT, TOO_LONG, NOT_BASE64, STANDARD_ALPHABET, BAD_PADDING]
PASSPHRASES = ["your-secret-key", "changeme", "password123", "my super secret key", "hunter2"]


def pieces(value: str, size: int = 4) -> set[str]:
    """Return every substring of ``value`` of length ``size``."""
    return {value[i : i + size] for i in range(len(value) - size + 1)}


def assert_value_not_leaked(value: str, *texts: str) -> None:
    """Assert no 4-character piece of ``value`` appears in any of ``texts``."""
    for text in texts:
        leaked = sorted(p for p in pieces(value) if p in text)
        assert not leaked, f"value leaked: {leaked!r} in {text!r}"


def exc_texts(exc: BaseException) -> list[str]:
    """Every way an exception is usually shown: str, repr, args and the full traceback."""
    return [
        str(exc),
        repr(exc),
        repr(exc.args),
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=True)),
        "".join(traceback.format_exception_only(type(exc), exc)),
        repr(vars(exc)),
    ]


def test_distinctive_values_do_not_share_pieces_with_error_vocabulary() -> None:
    """The leak checks below are meaningful: our test values share no piece with the messages."""
    vocabulary = (
        "generate one with `mscomm keygen` (32 random bytes, URL-safe base64) "
        "BILLING_ENCRYPTION_KEY holds a key of the wrong length not URL-safe base64"
    )
    for value in [*MALFORMED, KEY_OLD, KEY_NEW]:
        assert_value_not_leaked(value, vocabulary)


# -- variable names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        ("other-service", "OTHER_SERVICE_ENCRYPTION_KEY"),
        ("billing", "BILLING_ENCRYPTION_KEY"),
        ("Billing.V2", "BILLING_V2_ENCRYPTION_KEY"),
        ("a_b-c.d9", "A_B_C_D9_ENCRYPTION_KEY"),
        ("9lives", "9LIVES_ENCRYPTION_KEY"),
    ],
)
def test_env_var_name(service: str, variable: str) -> None:
    """The variable is the upper-cased name with every non-[A-Z0-9] character as "_"."""
    assert env_var_name(service) == variable


def test_keys_are_read_from_the_named_variable() -> None:
    """A keyring reads other-service's key from OTHER_SERVICE_ENCRYPTION_KEY."""
    ring = Keyring(environ={"OTHER_SERVICE_ENCRYPTION_KEY": KEY_OLD})
    assert ring.keys_for("other-service").sealing.secret == RAW_OLD


def test_default_keyring_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyring() reads keys from os.environ."""
    monkeypatch.setenv("OTHER_SERVICE_ENCRYPTION_KEY", KEY_NEW)
    assert Keyring().keys_for("other-service").sealing.secret == RAW_NEW


def test_keys_are_read_lazily() -> None:
    """Building a keyring reads nothing; a variable set afterwards is seen on first use."""
    environ: dict[str, str] = {}
    ring = Keyring(environ=environ)
    environ["BILLING_ENCRYPTION_KEY"] = KEY_OLD
    assert ring.keys_for("billing").sealing.secret == RAW_OLD


def test_reload_picks_up_a_rotated_variable() -> None:
    """After reload() the keyring sees a changed variable."""
    environ = {"BILLING_ENCRYPTION_KEY": KEY_OLD}
    ring = Keyring(environ=environ)
    assert ring.keys_for("billing").sealing.secret == RAW_OLD
    environ["BILLING_ENCRYPTION_KEY"] = f"{KEY_NEW},{KEY_OLD}"
    ring.reload()
    assert ring.keys_for("billing").sealing.secret == RAW_NEW


# -- key format ----------------------------------------------------------------------


def test_generated_key_is_32_bytes_of_unpadded_urlsafe_base64() -> None:
    """generate_key() returns 43 URL-safe base64 characters encoding 32 bytes."""
    key = generate_key()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
    assert len(base64.urlsafe_b64decode(key + "=")) == 32


def test_generated_keys_differ() -> None:
    """Each generated key is fresh."""
    assert len({generate_key() for _ in range(20)}) == 20


def test_generated_key_is_accepted_by_the_keyring() -> None:
    """A generated key works as a service key."""
    key = generate_key()
    ring = Keyring(environ={"BILLING_ENCRYPTION_KEY": key})
    assert len(ring.keys_for("billing").sealing.secret) == 32


def test_padding_is_optional() -> None:
    """A key with and without its "=" padding is the same key."""
    padded = base64.urlsafe_b64encode(RAW_OLD).decode()
    assert padded.endswith("=")
    with_pad = Key.from_text(padded, source="X")
    without_pad = Key.from_text(padded.rstrip("="), source="X")
    assert with_pad.secret == without_pad.secret == RAW_OLD
    assert with_pad.kid == without_pad.kid


def test_surrounding_whitespace_is_ignored() -> None:
    """Whitespace around keys and commas (as in shell-edited env files) is ignored."""
    ring = Keyring(environ={"BILLING_ENCRYPTION_KEY": f" {KEY_NEW} ,\n{KEY_OLD}\n"})
    assert [k.secret for k in ring.keys_for("billing").keys] == [RAW_NEW, RAW_OLD]


def test_key_id_is_derived_from_the_key() -> None:
    """The key id is 16 hex digits, the same wherever the key is loaded, different per key."""
    first = Key.from_text(KEY_OLD, source="A")
    again = Keyring(environ={"X_ENCRYPTION_KEY": KEY_OLD}).keys_for("x").sealing
    other = Key.from_bytes(RAW_NEW)
    assert re.fullmatch(r"[0-9a-f]{16}", first.kid)
    assert first.kid == again.kid
    assert first.kid != other.kid


def test_key_id_does_not_reveal_the_key() -> None:
    """The key id is not a piece of the key's text or hex."""
    key = Key.from_bytes(RAW_OLD)
    assert key.kid not in RAW_OLD.hex()
    assert key.kid not in KEY_OLD


# -- rotation ------------------------------------------------------------------------


def test_first_key_seals_and_all_open() -> None:
    """In "NEW,OLD" the first key seals and both keys are found by id."""
    keys = Keyring(environ={"BILLING_ENCRYPTION_KEY": f"{KEY_NEW},{KEY_OLD}"}).keys_for("billing")
    assert keys.sealing.secret == RAW_NEW
    new, old = Key.from_bytes(RAW_NEW), Key.from_bytes(RAW_OLD)
    assert keys.find(new.kid).secret == RAW_NEW  # type: ignore[union-attr]
    assert keys.find(old.kid).secret == RAW_OLD  # type: ignore[union-attr]
    assert keys.find("0" * 16) is None


def _pair(alpha_keys: str) -> tuple[Envelope, Envelope]:
    ring = Keyring(
        environ={"ALPHA_ENCRYPTION_KEY": alpha_keys, "BILLING_ENCRYPTION_KEY": KEY_BILLING}
    )
    clock = lambda: T0  # noqa: E731
    return (
        Envelope("alpha", keyring=ring, clock=clock, replay_store=MemoryReplayStore(clock=clock)),
        Envelope("billing", keyring=ring, clock=clock, replay_store=MemoryReplayStore(clock=clock)),
    )


def _open(receiver: Envelope, sealed: object) -> object:
    return receiver.open_request(
        method="POST",
        target="/x",
        headers=sealed.headers,  # type: ignore[attr-defined]
        body=sealed.body,  # type: ignore[attr-defined]
    )


def test_message_sealed_under_old_key_opens_after_rotation() -> None:
    """A message sealed before rotation opens at a receiver that already has "NEW,OLD"."""
    old_sender, _ = _pair(KEY_OLD)
    _, rotated_receiver = _pair(f"{KEY_NEW},{KEY_OLD}")
    sealed = old_sender.seal_request(recipient="billing", method="POST", target="/x", body=b"hi")
    assert _open(rotated_receiver, sealed).body == b"hi"  # type: ignore[attr-defined]


def test_after_rotation_new_messages_use_the_new_key() -> None:
    """After rotation the sender seals with the first key."""
    sender, receiver = _pair(f"{KEY_NEW},{KEY_OLD}")
    sealed = sender.seal_request(recipient="billing", method="POST", target="/x")
    assert seal_fields(sealed.headers[HEADER_SEAL])["kid"] == Key.from_bytes(RAW_NEW).kid
    assert _open(receiver, sealed).key_id == Key.from_bytes(RAW_NEW).kid  # type: ignore[attr-defined]


def test_message_under_a_removed_key_fails(caplog: pytest.LogCaptureFixture) -> None:
    """Once the old key is removed, a message sealed under it is rejected as an unknown key id."""
    old_sender, _ = _pair(KEY_OLD)
    _, new_only_receiver = _pair(KEY_NEW)
    sealed = old_sender.seal_request(recipient="billing", method="POST", target="/x")
    log_at_info = caplog.at_level(logging.INFO, logger="mscomm_sync.envelope")
    with log_at_info, pytest.raises(IntegrityError):
        _open(new_only_receiver, sealed)
    assert "unknown key id" in caplog.text


@pytest.mark.parametrize(("sealing", "raw"), [(KEY_OLD, RAW_OLD), (KEY_NEW, RAW_NEW)])
def test_opening_derives_from_exactly_the_named_key(
    monkeypatch: pytest.MonkeyPatch, sealing: str, raw: bytes
) -> None:
    """Opening uses only the key whose id the message carries: no trial decryption."""
    sender, _ = _pair(sealing)
    _, receiver = _pair(f"{KEY_NEW},{KEY_OLD}")
    sealed = sender.seal_request(recipient="billing", method="POST", target="/x")
    used: list[bytes] = []
    real = envelope_module.derive_message_key

    def spy(secret: bytes, message_id: bytes) -> bytes:
        used.append(secret)
        return real(secret, message_id)

    monkeypatch.setattr(envelope_module, "derive_message_key", spy)
    _open(receiver, sealed)
    assert used == [raw]


# -- errors --------------------------------------------------------------------------


def test_configuration_error_is_an_mscomm_error_and_value_error() -> None:
    """ConfigurationError subclasses MscommError (and ValueError)."""
    assert issubclass(ConfigurationError, MscommError)
    assert issubclass(ConfigurationError, ValueError)


def test_missing_key_names_the_variable_and_how_to_generate() -> None:
    """A missing key raises ConfigurationError naming the variable and `mscomm keygen`."""
    with pytest.raises(ConfigurationError) as info:
        Keyring(environ={}).keys_for("other-service")
    assert "OTHER_SERVICE_ENCRYPTION_KEY" in str(info.value)
    assert "mscomm keygen" in str(info.value)
    assert info.value.variable == "OTHER_SERVICE_ENCRYPTION_KEY"


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_empty_key_is_rejected(value: str) -> None:
    """An empty variable is a configuration error naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        Keyring(environ={"BILLING_ENCRYPTION_KEY": value}).keys_for("billing")
    assert "BILLING_ENCRYPTION_KEY" in str(info.value)
    assert "mscomm keygen" in str(info.value)


@pytest.mark.parametrize("value", MALFORMED, ids=["short", "long", "junk", "std-b64", "padding"])
def test_malformed_key_names_variable_and_how_to_generate(value: str) -> None:
    """A malformed or wrong-length key names the variable and how to generate a key."""
    with pytest.raises(ConfigurationError) as info:
        Keyring(environ={"BILLING_ENCRYPTION_KEY": value}).keys_for("billing")
    assert "BILLING_ENCRYPTION_KEY" in str(info.value)
    assert "mscomm keygen" in str(info.value)
    assert info.value.variable == "BILLING_ENCRYPTION_KEY"


@pytest.mark.parametrize("value", MALFORMED, ids=["short", "long", "junk", "std-b64", "padding"])
def test_malformed_key_never_appears_in_error_or_logs(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No 4-character piece of a rejected key appears in the error, its traceback or logs."""
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigurationError) as info:
        Keyring(environ={"BILLING_ENCRYPTION_KEY": value}).keys_for("billing")
    assert_value_not_leaked(value, *exc_texts(info.value), caplog.text)


@pytest.mark.parametrize("bad", MALFORMED, ids=["short", "long", "junk", "std-b64", "padding"])
def test_valid_key_beside_a_malformed_one_is_not_leaked(bad: str) -> None:
    """When one key in a rotation list is bad, no piece of any key in the list is shown."""
    value = f"{KEY_NEW},{bad}"
    with pytest.raises(ConfigurationError) as info:
        Keyring(environ={"BILLING_ENCRYPTION_KEY": value}).keys_for("billing")
    assert_value_not_leaked(KEY_NEW, *exc_texts(info.value))
    assert_value_not_leaked(bad, *exc_texts(info.value))


@pytest.mark.parametrize("value", MALFORMED, ids=["short", "long", "junk", "std-b64", "padding"])
def test_malformed_key_from_mapping_is_not_leaked(value: str) -> None:
    """Keys passed through from_mapping are rejected without echoing them."""
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_mapping({"billing": value})
    assert "mscomm keygen" in str(info.value)
    assert_value_not_leaked(value, *exc_texts(info.value))


def test_sender_with_malformed_key_is_rejected_without_leaking_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Opening a message from a sender whose key is malformed logs no piece of that key."""
    good = Keyring.from_mapping({"alpha": KEY_OLD, "billing": KEY_BILLING})
    clock = lambda: T0  # noqa: E731
    sender = Envelope("alpha", keyring=good, clock=clock)
    sealed = sender.seal_request(recipient="billing", method="GET", target="/x")
    bad_ring = Keyring(
        environ={"ALPHA_ENCRYPTION_KEY": NOT_BASE64, "BILLING_ENCRYPTION_KEY": KEY_BILLING}
    )
    receiver = Envelope("billing", keyring=bad_ring, clock=clock)
    with caplog.at_level(logging.DEBUG), pytest.raises(IntegrityError) as info:
        receiver.open_request(method="GET", target="/x", headers=sealed.headers, body=sealed.body)
    assert "ALPHA_ENCRYPTION_KEY" in caplog.text
    assert_value_not_leaked(NOT_BASE64, caplog.text, *exc_texts(info.value))


@pytest.mark.parametrize("passphrase", PASSPHRASES)
def test_passphrases_are_rejected(passphrase: str) -> None:
    """Human passphrases are not keys and raise ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        Keyring(environ={"BILLING_ENCRYPTION_KEY": passphrase}).keys_for("billing")
    assert "BILLING_ENCRYPTION_KEY" in str(info.value)
    assert passphrase not in str(info.value)
    assert passphrase not in repr(info.value)


@pytest.mark.parametrize("raw", [b"", bytes(16), bytes(31), bytes(33)])
def test_raw_key_must_be_32_bytes(raw: bytes) -> None:
    """Raw key bytes of any length but 32 are rejected."""
    with pytest.raises(ConfigurationError):
        Key.from_bytes(raw)


# -- reprs ---------------------------------------------------------------------------


def test_reprs_never_show_key_material() -> None:
    """Key, ServiceKeys and Keyring reprs show ids and names, never key bytes or text."""
    ring = Keyring.from_mapping({"billing": [KEY_NEW, KEY_OLD]})
    keys = ring.keys_for("billing")
    env_ring = Keyring(environ={"ALPHA_ENCRYPTION_KEY": KEY_OLD})
    env_ring.keys_for("alpha")
    texts = [repr(ring), repr(keys), repr(keys.sealing), str(keys.sealing), repr(env_ring)]
    assert keys.sealing.kid in repr(keys.sealing)
    for text in texts:
        for secret_form in (KEY_NEW, KEY_OLD, RAW_NEW.hex(), RAW_OLD.hex(), repr(RAW_OLD)):
            assert_value_not_leaked(secret_form[:24], text)


# -- from_mapping ----------------------------------------------------------------------


def test_from_mapping_accepts_every_documented_form() -> None:
    """from_mapping takes key text, comma lists, raw bytes, Key objects and lists of those."""
    ring = Keyring.from_mapping(
        {
            "text": KEY_OLD,
            "comma": f"{KEY_NEW},{KEY_OLD}",
            "raw": RAW_OLD,
            "key": Key.from_bytes(RAW_NEW),
            "mixed": [RAW_NEW, KEY_OLD, Key.from_bytes(RAW_OLD)],
        }
    )
    assert ring.keys_for("text").sealing.secret == RAW_OLD
    assert [k.secret for k in ring.keys_for("comma").keys] == [RAW_NEW, RAW_OLD]
    assert ring.keys_for("raw").sealing.secret == RAW_OLD
    assert ring.keys_for("key").sealing.secret == RAW_NEW
    assert [k.secret for k in ring.keys_for("mixed").keys] == [RAW_NEW, RAW_OLD, RAW_OLD]


def test_from_mapping_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapping keyring ignores <NAME>_ENCRYPTION_KEY variables."""
    monkeypatch.setenv("BILLING_ENCRYPTION_KEY", KEY_OLD)
    ring = Keyring.from_mapping({"alpha": KEY_NEW})
    with pytest.raises(ConfigurationError):
        ring.keys_for("billing")


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "slash/name", "x" * 129])
def test_from_mapping_rejects_invalid_service_names(name: str) -> None:
    """Service names outside [A-Za-z0-9._-] (starting alphanumeric, <=128) are rejected."""
    with pytest.raises(ConfigurationError):
        Keyring.from_mapping({name: KEY_OLD})


def test_from_mapping_rejects_an_empty_list() -> None:
    """A service given no keys at all is a configuration error."""
    with pytest.raises(ConfigurationError):
        Keyring.from_mapping({"billing": []})


def test_service_keys_of_keeps_order() -> None:
    """ServiceKeys.of keeps the given order; the first seals."""
    keys = ServiceKeys.of("billing", [Key.from_bytes(RAW_OLD), Key.from_bytes(RAW_NEW)])
    assert keys.sealing.secret == RAW_OLD


def test_long_passphrase_that_decodes_to_32_bytes_is_rejected() -> None:
    """A 43-character lower-case passphrase decodes to 32 bytes but is refused as a key."""
    passphrase = "this-is-my-very-long-and-secret-passphrase1"
    with pytest.raises(ConfigurationError) as info:
        Keyring(environ={"BILLING_ENCRYPTION_KEY": passphrase}).keys_for("billing")
    assert info.value.variable == "BILLING_ENCRYPTION_KEY"
    assert "passphrase" in str(info.value)
    assert "this-is" not in str(info.value)
