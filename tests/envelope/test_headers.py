"""Tests for mscomm_sync.envelope.headers: the seal header's one spelling, methods, claimed ids.

The seal header arrives from the network, so its parser is also tested with hypothesis:
whatever the text, it returns None or fields that spell that very text.
"""

from __future__ import annotations

import itertools
import re
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.seal import SEAL_FIELDS, seal_fields, seal_value

from mscomm_sync.envelope.headers import (
    COMMON_METHODS,
    SealFields,
    bound_method,
    claimed_ids,
    format_seal,
    parse_seal,
    seal_version,
)

KID = "0123456789abcdef"
MID = "00112233445566778899aabbccddeeff"
TS = "1700000000"
CT = "a1" * 16  # the smallest sealed content type: an empty one and its 16-byte tag
SEAL = f"v=1;kid={KID};ts={TS};id={MID};ct={CT}"


def hex_text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """Lower-case hex of a length between the bounds."""
    return st.text(alphabet="0123456789abcdef", min_size=min_size, max_size=max_size)


kids = hex_text(16, 16)
mids = hex_text(32, 32)
timestamps = st.integers(min_value=0, max_value=10**12 - 1).map(str)
sealed_cts = st.binary(min_size=16, max_size=1040).map(bytes.hex)


def with_field(name: str, value: str) -> str:
    """Return SEAL with field ``name`` set to ``value``."""
    fields = seal_fields(SEAL)
    fields[name] = value
    return seal_value(fields)


# -- format_seal and parse_seal ---------------------------------------------------


def test_format_seal_writes_the_documented_form() -> None:
    """format_seal gives v, kid, ts, id and ct in that order, ';'-separated, no spaces."""
    assert format_seal("1", KID, TS, MID, CT) == SEAL


def test_parse_seal_returns_the_fields_as_text() -> None:
    """A well-formed seal parses to its key id, timestamp, message id and sealed type."""
    expected = SealFields(
        version="1", kid=KID, timestamp=TS, message_id=MID, sealed_content_type=CT
    )
    assert parse_seal(SEAL) == expected


@settings(max_examples=200, deadline=None)
@given(kid=kids, ts=timestamps, mid=mids, ct=sealed_cts)
def test_format_then_parse_round_trips(kid: str, ts: str, mid: str, ct: str) -> None:
    """Every seal format_seal writes for valid fields parses back to exactly those fields."""
    assert parse_seal(format_seal("1", kid, ts, mid, ct)) == ("1", kid, ts, mid, ct)


def test_fields_in_any_other_order_are_refused() -> None:
    """Of the 120 orders of the five fields, only the documented one parses."""
    fields = seal_fields(SEAL)
    parsed = [
        order
        for order in itertools.permutations(SEAL_FIELDS)
        if parse_seal(seal_value((name, fields[name]) for name in order)) is not None
    ]
    assert parsed == [SEAL_FIELDS]


@pytest.mark.parametrize(
    "value",
    [
        "x=1;" + SEAL,
        SEAL.replace(";ts=", ";x=1;ts="),
        SEAL + ";x=1",
        SEAL + ";v=1",
        SEAL + ";",
        ";" + SEAL,
        SEAL.replace(";", ";;", 1),
    ],
    ids=[
        "first",
        "middle",
        "last",
        "duplicate",
        "trailing-separator",
        "leading-separator",
        "empty-field",
    ],
)
def test_an_extra_field_is_refused(value: str) -> None:
    """Any field (or empty field) beyond the five is refused, wherever it is."""
    assert parse_seal(value) is None


@pytest.mark.parametrize("name", SEAL_FIELDS)
def test_a_missing_field_is_refused(name: str) -> None:
    """Leaving out any one of the five fields is refused."""
    fields = seal_fields(SEAL)
    assert parse_seal(seal_value((k, v) for k, v in fields.items() if k != name)) is None


@pytest.mark.parametrize("name", ["kid", "id", "ct"])
def test_upper_case_hex_is_refused(name: str) -> None:
    """Hex fields are lower case only: one upper-case digit is refused."""
    value = seal_fields(SEAL)[name]
    assert value != value.upper()
    assert parse_seal(with_field(name, value.upper())) is None
    assert parse_seal(with_field(name, "A" + value[1:])) is None


def test_upper_case_field_names_are_refused() -> None:
    """Field names are lower case: KID= is not kid=."""
    assert parse_seal(SEAL.replace(";kid=", ";KID=")) is None
    assert parse_seal("V" + SEAL[1:]) is None


@pytest.mark.parametrize("ct", [CT + "a", CT[:-1], "a" * 33, "a" * 2079])
def test_odd_length_sealed_content_type_is_refused(ct: str) -> None:
    """The ct field is whole bytes: an odd number of hex digits is refused."""
    assert parse_seal(with_field("ct", ct)) is None


@pytest.mark.parametrize(
    ("ct", "accepted"),
    [("a" * 30, False), ("a" * 32, True), ("a" * 2080, True), ("a" * 2082, False)],
    ids=["below-tag", "empty-type", "largest-type", "too-large"],
)
def test_sealed_content_type_length_is_bounded(ct: str, accepted: bool) -> None:
    """ct holds at least a 16-byte tag and at most a 1024-byte type plus its tag."""
    assert (parse_seal(with_field("ct", ct)) is not None) is accepted


@pytest.mark.parametrize(
    "value",
    [
        " " + SEAL,
        SEAL + " ",
        SEAL + "\t",
        SEAL + "\n",
        SEAL + "\r\n",
        "\n" + SEAL,
        SEAL.replace(";", "; "),
        SEAL.replace(";", " ;"),
        SEAL.replace("kid=", "kid ="),
        SEAL.replace("kid=", "kid= "),
        SEAL.replace(MID, MID[:16] + " " + MID[16:]),
    ],
)
def test_white_space_anywhere_is_refused(value: str) -> None:
    """Spaces, tabs or line breaks anywhere in the header, at its ends too, are refused."""
    assert parse_seal(value) is None


@pytest.mark.parametrize("ts", ["00", "01", "0" + TS, "-1", "+1", "1.5", "1e9", "", "1" * 13])
def test_timestamps_other_than_plain_decimal_are_refused(ts: str) -> None:
    """ts is plain decimal without leading zeros or a sign, at most 12 digits."""
    assert parse_seal(with_field("ts", ts)) is None


@pytest.mark.parametrize("ts", ["0", "7", "9" * 12])
def test_plain_decimal_timestamps_are_accepted(ts: str) -> None:
    """0, one digit and twelve digits are all plain decimal."""
    fields = parse_seal(with_field("ts", ts))
    assert fields is not None and fields.timestamp == ts


@pytest.mark.parametrize("version", ["", "2", "01", "1.0", "11"])
def test_other_versions_are_refused(version: str) -> None:
    """Only v=1 parses."""
    assert parse_seal(with_field("v", version)) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("kid", KID[:-1]),
        ("kid", KID + "0"),
        ("id", MID[:-1]),
        ("id", MID + "0"),
        ("kid", KID[:-1] + "g"),
        ("id", MID[:-1] + "\u0660"),
    ],
    ids=["kid-short", "kid-long", "id-short", "id-long", "kid-not-hex", "id-arabic-digit"],
)
def test_ids_of_the_wrong_length_or_alphabet_are_refused(name: str, value: str) -> None:
    """kid is exactly 16 hex digits and id exactly 32."""
    assert parse_seal(with_field(name, value)) is None


_pieces = st.one_of(
    st.sampled_from(["v=1", ";", "kid=", "ts=", "id=", "ct=", "=", " ", "\n", "0", "A"]),
    kids,
    mids,
    timestamps,
    hex_text(0, 40),
    st.text(max_size=4),
)


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.text(max_size=120), st.lists(_pieces, max_size=14).map("".join)))
def test_whatever_parses_is_the_one_spelling_of_its_fields(value: str) -> None:
    """For any text, parse_seal returns None or fields that format back to exactly that text."""
    fields = parse_seal(value)
    if fields is not None:
        assert format_seal("1", *fields) == value


@settings(max_examples=300, deadline=None)
@given(
    kid=kids,
    ts=timestamps,
    mid=mids,
    ct=sealed_cts,
    at=st.integers(min_value=0),
    char=st.characters(),
    edit=st.sampled_from(["insert", "delete", "replace"]),
)
def test_one_character_edited_in_a_seal_never_parses_to_other_fields(
    kid: str, ts: str, mid: str, ct: str, at: int, char: str, edit: str
) -> None:
    """Inserting, deleting or replacing one character of a valid seal either fails to parse or
    gives fields that spell the edited text (never the old fields under a new spelling)."""
    value = format_seal("1", kid, ts, mid, ct)
    at %= len(value)
    if edit == "insert":
        edited = value[:at] + char + value[at:]
    elif edit == "delete":
        edited = value[:at] + value[at + 1 :]
    else:
        edited = value[:at] + char + value[at + 1 :]
    fields = parse_seal(edited)
    if fields is not None:
        assert format_seal(*fields) == edited
        assert (fields == ("1", kid, ts, mid, ct)) == (edited == value)


def test_seal_version_is_the_first_field_as_sent() -> None:
    """seal_version returns the text before the first ';' (for the log only)."""
    assert seal_version(SEAL) == "v=1"
    assert seal_version("v=2;kid=x") == "v=2"
    assert seal_version("") == ""


# -- bound_method -------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(COMMON_METHODS))
def test_common_methods_are_bound_as_they_are(method: str) -> None:
    """The common upper-case methods are returned unchanged."""
    assert bound_method(method) == method


@pytest.mark.parametrize(
    ("method", "bound"),
    [("get", "GET"), ("Post", "POST"), ("propfind", "PROPFIND"), ("M" * 16, "M" * 16)],
)
def test_other_methods_are_bound_upper_case(method: str, bound: str) -> None:
    """Any method of 1 to 16 letters is bound in upper case."""
    assert bound_method(method) == bound


@pytest.mark.parametrize(
    "method", ["", "M" * 17, "GET ", " GET", "GE T", "GET\n", "GET1", "M-SEARCH", "G\u0130T"]
)
def test_anything_but_1_to_16_letters_is_not_a_method(method: str) -> None:
    """Empty, too long, spaced, digit, dash or non-ASCII methods give None."""
    assert bound_method(method) is None


def test_bytes_are_not_a_method() -> None:
    """A bytes method is refused, not decoded."""
    assert bound_method(b"GET") is None


@pytest.mark.parametrize("method", [None, True], ids=["none", "true"])
def test_values_that_are_not_text_are_not_methods(method: object) -> None:
    """A value that is not a str (None, a bool) is not a method, whatever its str() spells."""
    assert bound_method(method) is None


class LyingStr(str):
    """A str subclass that claims to equal anything."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("GET")


def test_a_str_subclass_is_bound_as_a_plain_str() -> None:
    """A str subclass never takes the common-method shortcut: its real text is bound."""
    bound = bound_method(LyingStr("delete"))
    assert bound == "DELETE"
    assert type(bound) is str


# -- claimed_ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        ("", (None, None)),
        (f"v=1;kid={KID};ts=1;id={MID};ct=x", (KID, MID)),
        (f"kid={KID};id={MID}", (KID, MID)),
        (f"v=1;kid={KID.upper()};id={MID.upper()}", (None, None)),
        (f"v=1;kid={KID[:-1]};id={MID[:-1]}", (None, None)),
        (f"v=1;kid={KID}0;id={MID}0", (None, None)),
        (f"v=1;kid={KID[:-1]}g;id={MID[:-1]}g", (None, None)),
        (f"v=1;kid={MID}", (None, None)),  # "id=" inside "kid=" is not a message id
        (f"v=1;xkid={KID};xid={MID}", (None, None)),
        (f"v=1;kid= {KID};id={MID} ", (None, None)),
        (f"v=1;kid={KID}\nforged;id={MID}\r\nX-Evil: 1", (None, None)),
        (f"v=1;kid={KID}'%(x)s;id={MID}%s", (None, None)),
        (f"v=1;kid={KID},{KID};id={MID},{MID}", (None, None)),
    ],
)
def test_claimed_ids_returns_only_well_formed_ids(
    value: Optional[str], expected: tuple[Optional[str], Optional[str]]
) -> None:
    """claimed_ids returns an id only if it is exactly hex of the right length, else None."""
    assert claimed_ids(value) == expected


def test_claimed_ids_reads_a_header_that_does_not_parse() -> None:
    """Ids are claimed from a header parse_seal refuses, so a refusal can still be logged."""
    value = f"v=2;kid={KID};ts=01;id={MID};ct=X"
    assert parse_seal(value) is None
    assert claimed_ids(value) == (KID, MID)


_claim_pieces = st.one_of(
    st.sampled_from(["kid=", "id=", ";", "v=1", "=", "\n", " ", "\x00", "ts=1", "ct="]),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=14, max_size=34),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.text(max_size=80), st.lists(_claim_pieces, max_size=12).map("".join)))
def test_claimed_ids_never_returns_anything_but_hex_ids(value: str) -> None:
    """Whatever the header holds, each claimed id is None or lower-case hex of its length."""
    kid, mid = claimed_ids(value)
    assert kid is None or (re.fullmatch(r"[0-9a-f]{16}", kid) and f"kid={kid}" in value)
    assert mid is None or (re.fullmatch(r"[0-9a-f]{32}", mid) and f"id={mid}" in value)
