"""Tests for mscomm_sync.envelope.fields: v2's sealed header section, exactly as specified."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mscomm_sync.envelope.fields import (
    FieldError,
    decode_section,
    decode_varint,
    encode_section,
    encode_varint,
    sealable,
)

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True).filter(lambda n: n != "content-type")
VALUES = st.from_regex(r"([\x21-\x7e]([\x20-\x7e\t]{0,80}[\x21-\x7e])?)?", fullmatch=True)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (63, b"\x3f"),
        (64, b"\x40\x40"),
        (16383, b"\x7f\xff"),
        (16384, b"\x80\x00\x40\x00"),
    ],
)
def test_varints_are_quic_variable_length_integers(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded, 0) == (value, len(encoded))


@given(
    st.text(max_size=60).filter(bool) | st.none(), st.lists(st.tuples(NAMES, VALUES), max_size=12)
)
def test_a_section_decodes_to_what_was_encoded(
    content_type: str | None, headers: list[tuple[str, str]]
) -> None:
    try:
        section = encode_section(content_type, headers)
    except FieldError:
        return  # a content type a header cannot carry
    assert decode_section(section) == (content_type, headers)


def test_order_and_repeats_are_kept_and_the_content_type_comes_first_once() -> None:
    headers = [("b", "2"), ("a", "1"), ("b", "3"), ("content-type", "text/plain")]
    section = encode_section("application/json", headers)
    assert decode_section(section) == ("application/json", [("b", "2"), ("a", "1"), ("b", "3")])


@pytest.mark.parametrize(
    ("name", "value"),
    [("Upper", "x"), ("bad name", "x"), ("", "x"), ("ok", " leading"), ("ok", "new\nline")],
)
def test_what_a_header_cannot_carry_is_refused_when_sealing(name: str, value: str) -> None:
    with pytest.raises(FieldError):
        encode_section(None, [(name, value)])


@pytest.mark.parametrize(
    "section",
    [
        b"",  # no length
        b"\x05\x01a",  # shorter than its length
        b"\x03\x01a\x01",  # the value's length is missing... and runs past
        b"\x02\x01a",  # a name, then the section ends before the value's length
        b"\x04\x01a\x01b\x00",  # a byte past the section's end
        b"\x04\x01A\x01b",  # an upper-case name
        b"\x04\x01a\x01\xff",  # not ASCII
        b"\x0a\x01a\x01b\x0ccontent-type"[:12],  # truncated inside a field
    ],
)
def test_a_malformed_section_is_refused(section: bytes) -> None:
    with pytest.raises(FieldError):
        decode_section(section)


def test_a_content_type_after_another_field_is_refused() -> None:
    late = encode_section(None, [("a", "1")])[1:] + encode_section("text/plain", [])[1:]
    with pytest.raises(FieldError):
        decode_section(bytes([len(late)]) + late)


def test_hop_by_hop_and_envelope_headers_are_not_sealed() -> None:
    given_headers = [("Connection", "close"), ("X-Request-Id", "r"), ("X-Mscomm-Seal", "v=1"),
                     ("Host", "h"), ("Authorization", "a")]  # fmt: skip
    assert sealable(given_headers) == [("x-request-id", "r"), ("authorization", "a")]
