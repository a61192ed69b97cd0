"""Tests for mscomm_sync.client.payload: a service-form payload and query as bytes."""

from __future__ import annotations

import json

import pytest

from mscomm_sync.client.payload import encode_payload, with_query


@pytest.mark.parametrize(
    ("payload", "body", "content_type"),
    [
        (None, None, None),
        (b"\x00raw", b"\x00raw", "application/octet-stream"),
        (bytearray(b"ab"), b"ab", "application/octet-stream"),
        ("é text", "é text".encode(), "text/plain; charset=utf-8"),
        ({"a": [1, 2]}, b'{"a":[1,2]}', "application/json"),
        ({"name": "Zoë"}, '{"name":"Zoë"}'.encode(), "application/json"),  # UTF-8, not \\u
        ([], b"[]", "application/json"),
        (0, b"0", "application/json"),
    ],
)
def test_each_kind_of_payload_has_its_body_and_type(
    payload: object, body: bytes | None, content_type: str | None
) -> None:
    assert encode_payload(payload) == (body, content_type)


def test_a_payload_json_cannot_encode_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode_payload({"when": object()})


def test_json_is_compact_and_round_trips() -> None:
    value = {"order": 42, "items": [{"sku": "a", "n": 2}]}
    body, _ = encode_payload(value)
    assert body is not None and b" " not in body and json.loads(body) == value


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("/x", None, "/x"),
        ("/x", {}, "/x"),
        ("/x", {"a": "1 2"}, "/x?a=1+2"),
        ("/x", {"a": ["1", "2"]}, "/x?a=1&a=2"),  # lists repeat the key, as requests does
        ("/x", [("b", 1), ("a", 2)], "/x?b=1&a=2"),  # pairs keep their order
        ("/x?z=0", {"a": 1}, "/x?z=0&a=1"),
        ("/x", "ready=1", "/x?ready=1"),
        ("/x", b"ready=1", "/x?ready=1"),
    ],
)
def test_params_become_the_query_as_requests_encodes_them(
    url: str, params: object, expected: str
) -> None:
    assert with_query(url, params) == expected  # type: ignore[arg-type]
