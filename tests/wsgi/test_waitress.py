"""Tests for mscomm_sync.wsgi.waitress: a large sealed body goes to waitress in its own wrapper.

The wrapper is waitress's real ``wsgi.file_wrapper``; the end-to-end answers under a
running waitress server are in test_fast_paths.py.
"""

from __future__ import annotations

import wsgiref.util
from typing import Any

import pytest
from waitress.buffers import ReadOnlyFileBasedBuffer

from mscomm_sync.wsgi.waitress import served_body

LARGE = 1024 * 1024 + 7
#: The smallest body handed to waitress in its wrapper.
THRESHOLD = 64 * 1024
WAITRESS = {"wsgi.file_wrapper": ReadOnlyFileBasedBuffer}


def test_large_body_goes_to_waitress_in_its_file_wrapper() -> None:
    """waitress gets a large body in its own wrapper, which yields it whole, uncopied."""
    body = b"s" * LARGE
    served = served_body(WAITRESS, [body])
    assert isinstance(served, ReadOnlyFileBasedBuffer)
    assert len(served) == len(body) and served
    chunks = list(served)
    assert chunks == [body] and chunks[0] is body


@pytest.mark.parametrize(
    "environ",
    [{}, {"wsgi.file_wrapper": wsgiref.util.FileWrapper}, {"wsgi.file_wrapper": None}],
)
def test_other_servers_get_the_list(environ: dict[str, Any]) -> None:
    """Without waitress's wrapper, a large body goes out as the list it came in."""
    chunks = [b"s" * LARGE]
    assert served_body(environ, chunks) is chunks


def test_small_body_goes_to_waitress_as_a_list() -> None:
    """A small body goes to waitress as a list, which it sends in one piece with the headers."""
    chunks = [b"s" * 1024]
    assert served_body(WAITRESS, chunks) is chunks


def test_a_body_of_exactly_the_threshold_is_wrapped() -> None:
    """A body of 64 KiB goes in waitress's wrapper."""
    body = b"s" * THRESHOLD
    served = served_body(WAITRESS, [body])
    assert isinstance(served, ReadOnlyFileBasedBuffer)
    assert list(served) == [body]


def test_a_body_just_below_the_threshold_is_a_list() -> None:
    """A body one byte short of 64 KiB goes as the list it came in."""
    chunks = [b"s" * (THRESHOLD - 1)]
    assert served_body(WAITRESS, chunks) is chunks


def test_a_large_body_in_several_chunks_is_joined_and_wrapped() -> None:
    """A large body of several chunks (a v2 answer's sealed fields, then its body) goes to
    waitress as one wrapped file of the chunks in order, not as chunks it would copy."""
    chunks = [b"head", b"t" * LARGE]
    served = served_body(WAITRESS, chunks)
    assert served is not chunks
    assert b"".join(served) == b"head" + b"t" * LARGE


def test_small_chunks_are_never_wrapped() -> None:
    """Small bodies go as they came, in chunks, whatever the server."""
    chunks = [b"head", b"t" * 100]
    assert served_body(WAITRESS, chunks) is chunks


def test_no_chunks_at_all_is_a_list() -> None:
    """An empty answer goes as its (empty) list."""
    chunks: list[bytes] = []
    assert served_body(WAITRESS, chunks) is chunks


class LookAlike:
    """A wrapper named like waitress's, but from another module."""

    def __init__(self, *args: Any) -> None:
        raise AssertionError("a wrapper from another module was used")


LookAlike.__name__ = LookAlike.__qualname__ = "ReadOnlyFileBasedBuffer"


def test_a_wrapper_of_the_same_name_from_another_module_is_not_used() -> None:
    """The gate is waitress's module, not the class name: a look-alike gets the list."""
    chunks = [b"s" * LARGE]
    assert served_body({"wsgi.file_wrapper": LookAlike}, chunks) is chunks
