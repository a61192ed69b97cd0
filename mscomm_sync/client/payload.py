"""How the service form turns a payload and query parameters into bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional, Union
from urllib.parse import urlencode

__all__ = ["Params", "encode_payload", "with_query"]

Params = Union[None, str, bytes, Mapping[str, Any], list[tuple[str, Any]]]


def with_query(url: str, params: Params) -> str:
    """Return ``url`` with ``params`` appended as its query (as requests encodes them).

    Args:
        url: the URL, possibly with a query already.
        params: a mapping or pairs (lists become repeated keys), or a ready
            query string.
    """
    if not params:
        return url
    if isinstance(params, bytes):
        query = params.decode("ascii")
    elif isinstance(params, str):
        query = params
    else:
        query = urlencode(params, doseq=True)
    return f"{url}&{query}" if "?" in url else f"{url}?{query}"


def encode_payload(payload: Any) -> tuple[Optional[bytes], Optional[str]]:
    """Return the body and content type for a service-form payload.

    Args:
        payload: ``bytes`` (sent as is), ``str`` (UTF-8 text), ``None`` (no
            body) or anything else (JSON).

    Returns:
        ``(body, content_type)``; both ``None`` for no body.

    Raises:
        TypeError: the payload cannot be encoded as JSON.
    """
    if payload is None:
        return None, None
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload), "application/octet-stream"
    if isinstance(payload, str):
        return payload.encode("utf-8"), "text/plain; charset=utf-8"
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8"), "application/json"
