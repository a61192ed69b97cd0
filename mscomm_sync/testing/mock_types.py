"""What a mocked service's handlers receive and return, and what it records."""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union
from urllib.parse import parse_qs, urlsplit

import attrs
from requests.structures import CaseInsensitiveDict

from ..envelope import ENVELOPE_HEADERS

__all__ = [
    "Handler",
    "MockCall",
    "MockReply",
    "MockRequest",
    "ReplyLike",
    "as_reply",
    "make_reply",
]

_ENVELOPE = frozenset(h.lower() for h in ENVELOPE_HEADERS)


@attrs.frozen(kw_only=True)
class MockRequest:
    """A request as the mocked service's handler sees it: verified and opened.

    Attributes:
        method: the HTTP method.
        url: the full URL it was sent to (an instance URL plus path and query).
        path: the path, e.g. ``/api/v1/charge``.
        query: the raw query string, without ``?``.
        headers: the request's headers, without the envelope headers.
        body: the plaintext body.
        content_type: the plaintext's ``Content-Type``, or ``None``.
        caller: the verified sending service; ``None`` for a plaintext
            request to an exempt path such as ``/health``.
    """

    method: str
    url: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    content_type: Optional[str]
    caller: Optional[str]

    @property
    def params(self) -> dict[str, list[str]]:
        """The query string parsed into ``{name: [values]}``."""
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """Return the body parsed as JSON.

        Raises:
            ValueError: the body is not JSON.
        """
        return _json.loads(self.body)

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        content_type: Optional[str],
        caller: Optional[str],
    ) -> MockRequest:
        """Build the request a handler sees; envelope headers are dropped."""
        parts = urlsplit(url)
        visible = {k: v for k, v in headers.items() if k.lower() not in _ENVELOPE}
        return cls(
            method=method,
            url=url,
            path=parts.path or "/",
            query=parts.query,
            headers=CaseInsensitiveDict(visible),
            body=body,
            content_type=content_type,
            caller=caller,
        )

    def __repr__(self) -> str:
        return f"<MockRequest {self.method} {self.path} caller={self.caller!r}>"


@attrs.frozen(kw_only=True)
class MockReply:
    """What a mocked service answers, before it is sealed.

    Attributes:
        status: the HTTP status.
        body: the plaintext body.
        content_type: the plaintext's ``Content-Type``.
        headers: further response headers.
    """

    status: int = 200
    body: bytes = b""
    content_type: Optional[str] = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class MockCall:
    """One request that reached a mocked service, and what became of it.

    Attributes:
        method: the HTTP method.
        url: the URL it was sent to.
        request: the opened request, or ``None`` when it was refused or a
            connect-phase fault was injected (it never got that far).
        status: the status answered, or ``None`` when a fault was injected.
        fault: the injected fault's kind, or ``None``.
        sealed: whether the request arrived sealed.
    """

    method: str
    url: str
    request: Optional[MockRequest]
    status: Optional[int]
    fault: Optional[str]
    sealed: bool


#: A handler's answer: a :class:`MockReply`; a dict or list (JSON, status 200);
#: ``(status, body)``; or ``(status, headers, body)``, where a body is bytes,
#: text, or a dict or list sent as JSON.
ReplyLike = Union[MockReply, Mapping[str, Any], list[Any], tuple[Any, ...]]
Handler = Callable[[MockRequest], ReplyLike]


def as_reply(value: ReplyLike) -> MockReply:
    """Return a handler's answer as a :class:`MockReply`.

    Raises:
        TypeError: the answer has none of the accepted shapes.
    """
    if isinstance(value, MockReply):
        return value
    if isinstance(value, (Mapping, list)):
        return _with_body(200, {}, value)
    if isinstance(value, tuple) and len(value) == 2:
        return _with_body(int(value[0]), {}, value[1])
    if isinstance(value, tuple) and len(value) == 3:
        return _with_body(int(value[0]), dict(value[1]), value[2])
    raise TypeError(
        "a mock handler must return a MockReply, a dict or list, "
        "(status, body) or (status, headers, body)"
    )


def make_reply(
    *,
    status: int,
    json: Any,
    body: Union[bytes, str, None],
    content_type: Optional[str],
    headers: Optional[Mapping[str, str]],
) -> MockReply:
    """Build the canned reply of :meth:`ServiceMock.add` from its keywords."""
    extra = dict(headers or {})
    if json is not None:
        reply = _with_body(status, extra, json)
    else:
        reply = _with_body(status, extra, body if body is not None else b"")
    if content_type is not None:
        reply = attrs.evolve(reply, content_type=content_type)
    return reply


def _with_body(status: int, headers: dict[str, str], body: Any) -> MockReply:
    content_type = None
    for name in list(headers):
        if name.lower() == "content-type":
            content_type = headers.pop(name)
    if isinstance(body, bytes):
        data = body
        content_type = content_type or ("application/octet-stream" if body else None)
    elif isinstance(body, str):
        data = body.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        data = _json.dumps(body).encode("utf-8")
        content_type = content_type or "application/json"
    return MockReply(status=status, body=data, content_type=content_type, headers=headers)
