"""The envelope's values: what a message is bound to, a sealed message, an opened one.

All three are immutable and built once per message (see :mod:`mscomm_sync._fast`
for why they are :class:`~mscomm_sync._fast.Record` objects, not tuples). None of
their reprs shows a body.
"""

from __future__ import annotations

from typing import Optional

from .._fast import Record

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
    """A sealed message: the headers to send and the body bytes.

    Attributes:
        headers: the envelope headers, including ``Content-Type``.
        body: the ciphertext with its 16-byte tag.
        message_id: this message's id (32 hex digits).
        timestamp: the Unix time bound into it.
    """

    __slots__ = ("headers", "body", "message_id", "timestamp")  # noqa: RUF023 - the fill order

    headers: dict[str, str]
    body: bytes
    message_id: str
    timestamp: int

    def __init__(self, headers: dict[str, str], body: bytes, message_id: str, timestamp: int):
        for name, value in zip(self._fields, (headers, body, message_id, timestamp)):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<Sealed id={self.message_id} bytes={len(self.body)}>"


class Opened(Record):
    """A verified, decrypted message.

    Attributes:
        sender: the verified sending service.
        body: the plaintext body.
        content_type: the original ``Content-Type``, or ``None``.
        message_id: the message's id.
        key_id: the id of the key that opened it.
        timestamp: the Unix time it was sealed.
    """

    __slots__ = ("sender", "body", "content_type", "message_id", "key_id", "timestamp")  # noqa: RUF023 - the fill order

    sender: str
    body: bytes
    content_type: Optional[str]
    message_id: str
    key_id: str
    timestamp: int

    def __init__(
        self,
        sender: str,
        body: bytes,
        content_type: Optional[str],
        message_id: str,
        key_id: str,
        timestamp: int,
    ) -> None:
        values = (sender, body, content_type, message_id, key_id, timestamp)
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<Opened sender={self.sender!r} id={self.message_id} bytes={len(self.body)}>"
