"""Tests for mscomm_sync.client.headers: fast reads of requests' CaseInsensitiveDict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from mscomm_sync.client.headers import drop_headers, header_names, header_pairs, header_value


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


def test_a_requests_mapping_is_read_through_its_store() -> None:
    """With the requests installed, the fast path is the one taken: the views are its store's
    own (if requests changed its layout this fails, and the mixins' path would still answer)."""
    headers = CaseInsensitiveDict(HEADERS)
    store = headers._store
    assert type(header_names(headers)) is type(store.keys())
    assert type(header_pairs(headers)) is type(store.values())
    assert header_names(headers) == store.keys()


def test_names_follow_later_changes_to_a_requests_mapping() -> None:
    """The names of a requests mapping are a live view: a deleted header is gone from them."""
    headers = CaseInsensitiveDict(HEADERS)
    names = header_names(headers)
    del headers["X-REQUEST-ID"]
    assert "x-request-id" not in names
    headers["Traceparent"] = "00-x"
    assert "traceparent" in names


def test_a_plain_dict_is_read_case_insensitively_too() -> None:
    """A plain dict (no requests mapping) gives the same answers, names compared lower-cased."""
    headers = {"Content-Type": "text/plain", "retry-after": "3"}
    assert set(header_names(headers)) == {"content-type", "retry-after"}
    assert list(header_pairs(headers)) == list(headers.items())
    assert header_value(headers, "retry-after") == "3"
    assert header_value(headers, "content-type") == "text/plain"
    assert header_value(headers, "x-request-id") is None


@pytest.mark.parametrize("kind", [CaseInsensitiveDict, dict, Subclass], ids=lambda k: k.__name__)
def test_drop_headers_removes_every_case_of_the_names_and_nothing_else(kind: Any) -> None:
    """Each named header goes whatever its case; the others stay, in order; nothing named
    is a no-op."""
    headers = kind({"TraceParent": "t", "X-Kept": "k", "transfer-ENCODING": "chunked", "A": "1"})
    drop_headers(headers, frozenset({"traceparent", "transfer-encoding", "absent"}))
    assert list(headers.items()) == [("X-Kept", "k"), ("A", "1")]
    drop_headers(headers, frozenset({"absent"}))
    assert list(headers.items()) == [("X-Kept", "k"), ("A", "1")]
