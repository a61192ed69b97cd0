"""Tests for mscomm_sync.client.headers: fast reads of requests' CaseInsensitiveDict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from mscomm_sync.client.headers import header_names, header_pairs, header_value


class Subclass(CaseInsensitiveDict):  # type: ignore[type-arg]
    """A subclass may store its headers differently: it takes the mixins' path."""


class Unusual(CaseInsensitiveDict):  # type: ignore[type-arg]
    """Not a CaseInsensitiveDict by exact type either."""


HEADERS = {"Content-Type": "text/plain", "X-Request-Id": "abc", "retry-after": "3"}


def mappings() -> list[Any]:
    odd = CaseInsensitiveDict(HEADERS)
    odd._store = _Store(odd._store)  # a store that is not the dict requests uses
    return [CaseInsensitiveDict(HEADERS), Subclass(HEADERS), odd]


class _Store(dict):  # type: ignore[type-arg]
    """A dict subclass as the store: the helpers must not trust it."""


@pytest.mark.parametrize("headers", mappings(), ids=["requests", "subclass", "odd-store"])
def test_the_fast_reads_agree_with_the_mapping_api(headers: Mapping[str, str]) -> None:
    """Names, pairs and values read fast are what the case-insensitive mapping itself says."""
    assert sorted(header_names(headers)) == sorted(n.lower() for n in headers)
    assert list(header_pairs(headers)) == list(headers.items())
    assert header_value(headers, "content-type") == headers.get("Content-Type") == "text/plain"
    assert header_value(headers, "x-request-id") == "abc"
    assert header_value(headers, "retry-after") == "3"
    assert header_value(headers, "content-encoding") is None
    assert "x-request-id" in header_names(headers)
    assert "traceparent" not in header_names(headers)


def test_names_follow_later_changes_to_a_requests_mapping() -> None:
    """The names of a requests mapping are a live view: a deleted header is gone from them."""
    headers = CaseInsensitiveDict(HEADERS)
    names = header_names(headers)
    del headers["X-REQUEST-ID"]
    assert "x-request-id" not in names
    headers["Traceparent"] = "00-x"
    assert "traceparent" in names


def test_a_plain_dict_is_read_by_its_own_names() -> None:
    """A plain dict is case-sensitive: names lower-cased for membership, values read as given."""
    headers = {"Content-Type": "text/plain", "retry-after": "3"}
    assert set(header_names(headers)) == {"content-type", "retry-after"}
    assert list(header_pairs(headers)) == list(headers.items())
    assert header_value(headers, "retry-after") == "3"
    assert header_value(headers, "content-type") is None  # the dict's own, case-sensitive answer
