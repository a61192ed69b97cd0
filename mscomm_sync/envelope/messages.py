"""The envelope's values: what a message is bound to, a sealed message, an opened one.

All three are immutable and built once per message (see :mod:`mscomm_sync._fast`
for why they are :class:`~mscomm_sync._fast.Record` objects, not tuples). None of
their reprs shows a body.
"""

from __future__ import annotations

from typing import Optional

from .._fast import Record
from .limits import JOIN_BELOW

__all__ = ["REQUEST", "RESPONSE", "Binding", "Opened", "Sealed"]

REQUEST = "request"
RESPONSE = "response"


class Binding(Record):
    """What one message is bound to, besides its key, time and id.

    Attributes:
        direction: :data:`REQUEST` or :data:`RESPONSE`.
        sender: the sending service.
        recipient: the receiving service.
        method: the request's upper-case method.
        target: the request's canonical target.
        status: the response's status as decimal text; empty for a request.
        reply_to: the answered request's message id; empty for a request.
    """

    __slots__ = ("direction", "sender", "recipient", "method", "target", "status", "reply_to")  # noqa: RUF023 - the fill order

    direction: str
    sender: str
    recipient: str
    method: str
    target: str
    status: str
    reply_to: str

    def __repr__(self) -> str:
        return (
            f"<Binding {self.direction} {self.sender}->{self.recipient} "
            f"{self.method} status={self.status or '-'}>"
        )


class Sealed(Record):
    """A sealed message: the headers to send and the body.

    Attributes:
        headers: the envelope headers, including ``Content-Type``.
        chunks: the sealed body in the pieces it was made in (v2 makes two,
            so that a large body is never copied); send them in order.
        message_id: this message's id (32 hex digits).
        timestamp: the Unix time bound into it.
        version: the protocol version, ``"1"`` or ``"2"``.
        pair: v2, the sender's and recipient's key ids (``<sender>-<recipient>``);
            v1, the sender's key id.
    """

    __slots__ = ("headers", "chunks", "message_id", "timestamp", "version", "pair")  # noqa: RUF023 - the fill order

    headers: dict[str, str]
    chunks: tuple[bytes, ...]
    message_id: str
    timestamp: int
    version: str
    pair: str

    def __init__(
        self,
        headers: dict[str, str],
        body: bytes,
        message_id: str,
        timestamp: int,
        version: str = "1",
        pair: str = "",
    ) -> None:
        values = (headers, (body,), message_id, timestamp, version, pair)
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    @property
    def body(self) -> bytes:
        """The whole sealed body (joined, for v2: prefer :attr:`chunks` to send it)."""
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def pieces(self) -> tuple[bytes, ...]:
        """The body as it should be sent: in one piece below :data:`~.limits.JOIN_BELOW`.

        Each piece is one write on the sender's socket and, for a small
        message, often one more read and event-loop turn on the receiver's
        (measured with waitress in-process: 20-40 us a call for v2's second chunk);
        a large body keeps its chunks, so it is never copied.
        """
        chunks = self.chunks
        if len(chunks) == 1 or self.length >= JOIN_BELOW:
            return chunks
        return (b"".join(chunks),)

    @property
    def length(self) -> int:
        """The sealed body's length in bytes."""
        chunks = self.chunks
        return len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))

    def __repr__(self) -> str:
        return f"<Sealed v{self.version} id={self.message_id} bytes={self.length}>"


class Opened(Record):
    """A verified, decrypted message.

    Attributes:
        sender: the verified sending service.
        body: the plaintext body.
        content_type: the original ``Content-Type``, or ``None``.
        message_id: the message's id.
        key_id: v1, the id of the sender's key that opened it; v2, the pair
            of key ids (``<sender>-<recipient>``).
        timestamp: the Unix time it was sealed.
        version: the protocol version, ``"1"`` or ``"2"``.
        headers: v2, the sealed end-to-end header fields (names lower case,
            in order, the content type aside); v1, none.
    """

    __slots__ = (  # noqa: RUF023 - the fill order
        "sender",
        "body",
        "content_type",
        "message_id",
        "key_id",
        "timestamp",
        "version",
        "headers",
    )

    sender: str
    body: bytes
    content_type: Optional[str]
    message_id: str
    key_id: str
    timestamp: int
    version: str
    headers: tuple[tuple[str, str], ...]

    def __init__(
        self,
        sender: str,
        body: bytes,
        content_type: Optional[str],
        message_id: str,
        key_id: str,
        timestamp: int,
        version: str = "1",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        values = (sender, body, content_type, message_id, key_id, timestamp, version, headers)
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"<Opened v{self.version} sender={self.sender!r} id={self.message_id}"
            f" bytes={len(self.body)}>"
        )
