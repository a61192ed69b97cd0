"""The sealed envelope: how one request or response is sealed and opened.

Trust model: the network between services is hostile. An attacker there can
read, drop, reorder, replay, reflect and rewrite any bytes, headers included,
and may hold the keys of *other* services. A service's key is shared by that
service and its callers (see ``docs/security.md``). Against that attacker this
module guarantees, for every message it opens:

* the body and its content type are confidential and unmodified (AES-256-GCM
  under a key derived freshly for every message, so nonces never repeat);
* the message was sealed by a holder of the claimed sender's key, for this
  recipient, in this direction, for this HTTP method and path with query, and,
  for a response, with this status, in answer to this request;
* it is fresh (timestamp within the window) and, for requests, delivered once
  (message id recorded in a replay store after a successful open).

Every failure raises :class:`~mscomm_sync.errors.IntegrityError` with one fixed
message; the reason goes to the ``mscomm_sync.envelope`` log only. This module
knows nothing of HTTP clients or WSGI: callers pass the method, the canonical
target (see :func:`canonical_target`), the headers and the body.

The wire format is specified in ``docs/protocol.md``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Callable, NamedTuple, Optional, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import (
    BODY_NONCE,
    META_NONCE,
    VERSION,
    associated_data,
    derive_message_key,
    message_aad,
)
from .errors import ConfigurationError, IntegrityError
from .keyring import Key, Keyring, validate_service_name
from .replay import MemoryReplayStore, ReplayStore
from .target import canonical_target, target_from_environ, target_from_url

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_WINDOW",
    "ENVELOPE_HEADERS",
    "HEADER_ENCRYPTED",
    "HEADER_SEAL",
    "HEADER_SEALED_BODY",
    "HEADER_SERVICE",
    "REQUEST",
    "RESPONSE",
    "SEALED_CONTENT_TYPE",
    "VERSION",
    "Envelope",
    "Opened",
    "Sealed",
    "associated_data",
    "canonical_target",
    "claimed_ids",
    "derive_message_key",
    "target_from_environ",
    "target_from_url",
]

log = logging.getLogger("mscomm_sync.envelope")

REQUEST = "request"
RESPONSE = "response"
DEFAULT_WINDOW = 60.0
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
SEALED_CONTENT_TYPE = "application/vnd.mscomm.sealed"

HEADER_ENCRYPTED = "X-Encrypted-Payload"
HEADER_SERVICE = "X-Encryption-Service"
#: Version, key id, timestamp, message id and sealed content type, in one
#: header: every header costs both sides parsing time on every call.
HEADER_SEAL = "X-Mscomm-Seal"
#: Carries the sealed body of an answer that HTTP forbids a body (HEAD, 204, 304).
HEADER_SEALED_BODY = "X-Mscomm-Sealed-Body"
ENVELOPE_HEADERS = (HEADER_ENCRYPTED, HEADER_SERVICE, HEADER_SEAL)

_MAX_CONTENT_TYPE = 1024
_MAX_REMEMBERED_NAMES = 1024
_CLAIMED_KID = re.compile(r"(?:^|;)kid=([0-9a-f]{16})(?:;|$)")
_CLAIMED_MID = re.compile(r"(?:^|;)id=([0-9a-f]{32})(?:;|$)")
_SEAL = re.compile(
    r"v=1;kid=([0-9a-f]{16});ts=(0|[1-9][0-9]{0,11});id=([0-9a-f]{32});ct=([0-9a-f]{32,2080})\Z"
)
_METHOD = re.compile(r"[A-Z]{1,16}\Z")
#: Methods already in the upper-case form bound into a seal, so the common
#: ones skip ``upper()`` and the regex (here and in the middleware).
COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def claimed_ids(seal: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """Return the key id and message id an unverified seal header claims.

    For logging refusals only: each value is returned only if it has the
    right form (hex of the right length), so nothing else from the network
    reaches a log line.
    """
    kid = _CLAIMED_KID.search(seal or "")
    mid = _CLAIMED_MID.search(seal or "")
    return (kid.group(1) if kid else None, mid.group(1) if mid else None)


def _new_message_id() -> bytes:
    # One place draws message ids, so test-vector generation can pin it.
    return os.urandom(16)


class Sealed(NamedTuple):
    """A sealed message: the headers to send and the body bytes.

    Immutable (a named tuple: building one costs a fraction of a microsecond,
    and one is built for every message).

    Attributes:
        headers: the envelope headers, including ``Content-Type``.
        body: the ciphertext with its 16-byte tag.
        message_id: this message's id (32 hex digits).
        timestamp: the Unix time bound into it.
    """

    headers: dict[str, str]
    body: bytes
    message_id: str
    timestamp: int

    def __repr__(self) -> str:
        return f"<Sealed id={self.message_id} bytes={len(self.body)}>"


class Opened:
    """A verified, decrypted message.

    Immutable. Deliberately not a tuple, unlike :class:`Sealed`: error
    reporters that walk sequences (and serialise the locals of a failing
    frame) would list a tuple's fields, plaintext included. Its ``repr``
    shows no plaintext either.

    Attributes:
        sender: the verified sending service.
        body: the plaintext body.
        content_type: the original ``Content-Type``, or ``None``.
        message_id: the message's id.
        key_id: the id of the key that opened it.
        timestamp: the Unix time it was sealed.
    """

    __slots__ = ("body", "content_type", "key_id", "message_id", "sender", "timestamp")

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
        _fill_opened(self, sender, body, content_type, message_id, key_id, timestamp)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Opened is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Opened is immutable (cannot delete {name!r})")

    def __repr__(self) -> str:
        return f"<Opened sender={self.sender!r} id={self.message_id} bytes={len(self.body)}>"


# The slots' own setters bypass the refusing __setattr__: the one way to fill one.
_SENDER, _BODY, _CONTENT_TYPE, _MESSAGE_ID, _KEY_ID, _TIMESTAMP = (
    getattr(Opened, name).__set__
    for name in ("sender", "body", "content_type", "message_id", "key_id", "timestamp")
)


def _fill_opened(
    target: Opened,
    sender: str,
    body: bytes,
    content_type: Optional[str],
    message_id: str,
    key_id: str,
    timestamp: int,
) -> Opened:
    _SENDER(target, sender)
    _BODY(target, body)
    _CONTENT_TYPE(target, content_type)
    _MESSAGE_ID(target, message_id)
    _KEY_ID(target, key_id)
    _TIMESTAMP(target, timestamp)
    return target


class Envelope:
    """One service's side of the envelope protocol.

    Args:
        service_name: this service's name; it seals as this sender and opens
            only messages addressed to it.
        keyring: where keys come from; defaults to the environment.
        window: how far, in seconds, a message's timestamp may be from now.
        replay_store: remembers request ids; defaults to a
            :class:`~mscomm_sync.replay.MemoryReplayStore`.
        max_body_size: sealed bodies larger than this are rejected before any
            cryptographic work.
        clock: wall-clock source, injectable for tests.

    Raises:
        ConfigurationError: an argument is invalid.
    """

    def __init__(
        self,
        service_name: str,
        *,
        keyring: Optional[Keyring] = None,
        window: float = DEFAULT_WINDOW,
        replay_store: Optional[ReplayStore] = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service_name = validate_service_name(service_name)
        if window <= 0:
            raise ConfigurationError("window must be a positive number of seconds")
        if max_body_size < 0:
            raise ConfigurationError("max_body_size must not be negative")
        self.keyring = keyring if keyring is not None else Keyring()
        self.window = float(window)
        self.replay_store: ReplayStore = (
            replay_store if replay_store is not None else MemoryReplayStore(clock=clock)
        )
        self.max_body_size = max_body_size
        self._clock = clock
        # Names that passed validate_service_name; bounded so that a stream
        # of made-up sender names cannot grow it without limit.
        self._valid_names: set[str] = set()

    def _remember(self, name: str) -> None:
        if len(self._valid_names) < _MAX_REMEMBERED_NAMES:
            self._valid_names.add(name)

    def __repr__(self) -> str:
        return f"<Envelope service={self.service_name!r} window={self.window:g}>"

    # -- sealing ---------------------------------------------------------

    def seal_request(
        self,
        *,
        recipient: str,
        method: str,
        target: str,
        body: bytes = b"",
        content_type: Optional[str] = None,
    ) -> Sealed:
        """Seal a request from this service to ``recipient``.

        Args:
            recipient: the service the request is for.
            method: the HTTP method.
            target: the canonical path and query (:func:`target_from_url`).
            body: the plaintext body; may be empty.
            content_type: the plaintext's ``Content-Type``.

        Raises:
            ConfigurationError: no usable key for this service.
        """
        if recipient not in self._valid_names:
            self._remember(validate_service_name(recipient, what="recipient"))
        return self._seal(REQUEST, recipient, method, target, body, content_type, None, "")

    def seal_response(
        self,
        *,
        recipient: str,
        method: str,
        target: str,
        status: int,
        reply_to: str,
        body: bytes = b"",
        content_type: Optional[str] = None,
    ) -> Sealed:
        """Seal this service's response to a request it opened.

        Args:
            recipient: the caller (``Opened.sender`` of the request).
            method: the request's method.
            target: the request's canonical target.
            status: the HTTP status being sent.
            reply_to: the request's message id.
            body: the plaintext response body.
            content_type: its ``Content-Type``.
        """
        return self._seal(RESPONSE, recipient, method, target, body, content_type, status, reply_to)

    def _seal(
        self,
        direction: str,
        recipient: str,
        method: str,
        target: str,
        body: bytes,
        content_type: Optional[str],
        status: Optional[int],
        reply_to: str,
    ) -> Sealed:
        if method not in COMMON_METHODS:
            method = method.upper()
            if not _METHOD.match(method):
                raise ConfigurationError("method must be 1-16 letters", reason="invalid method")
        ct_plain = content_type.encode("utf-8") if content_type else b""
        if len(ct_plain) > _MAX_CONTENT_TYPE:
            raise ConfigurationError(
                f"content type longer than {_MAX_CONTENT_TYPE} bytes", reason="invalid content type"
            )
        key = self.keyring.keys_for(self.service_name).sealing
        mid_bytes = _new_message_id()
        mid = mid_bytes.hex()
        ts = str(int(self._clock()))
        aad = message_aad(
            VERSION,
            key.kid,
            direction,
            self.service_name,
            recipient,
            method,
            target,
            ts,
            mid,
            "" if status is None else str(status),
            reply_to,
        )
        aead = AESGCM(derive_message_key(key.secret, mid_bytes))
        sealed_ct = aead.encrypt(META_NONCE, ct_plain, aad).hex()
        headers = {
            HEADER_ENCRYPTED: "true",
            HEADER_SERVICE: self.service_name,
            HEADER_SEAL: f"v={VERSION};kid={key.kid};ts={ts};id={mid};ct={sealed_ct}",
            "Content-Type": SEALED_CONTENT_TYPE,
        }
        # tuple.__new__ skips the named tuple's keyword-parsing constructor.
        return tuple.__new__(Sealed, (headers, aead.encrypt(BODY_NONCE, body, aad), mid, int(ts)))

    # -- opening ---------------------------------------------------------

    def open_request(
        self,
        *,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Union[bytes, bytearray, memoryview],
    ) -> Opened:
        """Verify and open a request addressed to this service.

        The message id is recorded in the replay store only after the
        message verified, so a forged message cannot burn a real one's id.

        Args:
            method: the HTTP method it arrived with.
            target: its canonical target (:func:`target_from_environ`).
            headers: its headers; lookups use the names in
                :data:`ENVELOPE_HEADERS` (a case-insensitive mapping works).
            body: the sealed body (a ``bytearray`` or ``memoryview`` is read, never kept).

        Raises:
            IntegrityError: for every reason it cannot be accepted.
        """
        opened = self._open(REQUEST, None, method, target, headers, body, None, "")
        expires = opened.timestamp + self.window + 1.0
        if not self.replay_store.add(f"{opened.sender}/{opened.message_id}", expires):
            raise self._reject("replay", opened.sender, opened.key_id, opened.message_id, REQUEST)
        return opened

    def open_response(
        self,
        *,
        sender: str,
        method: str,
        target: str,
        status: int,
        reply_to: str,
        headers: Mapping[str, str],
        body: Union[bytes, bytearray, memoryview],
    ) -> Opened:
        """Verify and open the response to a request this service sealed.

        Args:
            sender: the service the request was sent to.
            method: the request's method.
            target: the request's canonical target.
            status: the HTTP status the response arrived with.
            reply_to: the request's message id (``Sealed.message_id``).
            headers: the response headers.
            body: the sealed body.

        Raises:
            IntegrityError: for every reason it cannot be accepted.
        """
        return self._open(RESPONSE, sender, method, target, headers, body, status, reply_to)

    def _open(
        self,
        direction: str,
        expected_sender: Optional[str],
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Union[bytes, bytearray, memoryview],
        status: Optional[int],
        reply_to: str,
    ) -> Opened:
        sender = headers.get(HEADER_SERVICE)
        seal = headers.get(HEADER_SEAL) or ""
        fields = _SEAL.match(seal)
        kid, ts_text, mid, sealed_ct = fields.groups() if fields else (None, "", None, "")

        def reject(reason: str) -> IntegrityError:
            return self._reject(reason, sender, kid, mid, direction)

        if len(body) > self.max_body_size + 16:
            raise reject("body too large")
        if (headers.get(HEADER_ENCRYPTED) or "").lower() != "true":
            raise reject("not sealed")
        if kid is None or mid is None or len(sealed_ct) & 1:
            version = seal.partition(";")[0]
            raise reject("malformed envelope" if version == "v=1" else "unsupported version")
        if method not in COMMON_METHODS:
            method = method.upper()
            if not _METHOD.match(method):
                raise reject("malformed envelope")
        if sender is None:
            raise reject("malformed envelope")
        if sender not in self._valid_names:
            try:
                self._remember(validate_service_name(sender))
            except ConfigurationError:
                raise reject("malformed sender") from None
        if expected_sender is not None and sender != expected_sender:
            raise reject("unexpected sender")
        try:
            keys = self.keyring.keys_for(sender)
        except ConfigurationError as exc:
            raise reject(f"no usable key for sender ({exc.variable}: {exc.reason})") from None
        key: Optional[Key] = keys.find(kid)
        if key is None:
            raise reject("unknown key id")
        ts = int(ts_text)
        if abs(self._clock() - ts) > self.window:
            raise reject("stale timestamp")
        aad = message_aad(
            VERSION,
            kid,
            direction,
            sender,
            self.service_name,
            method,
            target,
            ts_text,
            mid,
            "" if status is None else str(status),
            reply_to,
        )
        aead = AESGCM(derive_message_key(key.secret, bytes.fromhex(mid)))
        try:
            # Lower-case hex of even length (regex and check above): one spelling.
            content_type = aead.decrypt(META_NONCE, bytes.fromhex(sealed_ct), aad).decode("utf-8")
            plaintext = aead.decrypt(BODY_NONCE, body, aad)
        except (InvalidTag, UnicodeDecodeError):
            raise reject("bad tag") from None
        return _fill_opened(
            object.__new__(Opened), sender, plaintext, content_type or None, mid, kid, ts
        )

    @staticmethod
    def _reject(
        reason: str,
        sender: Optional[str],
        kid: Optional[str],
        mid: Optional[str],
        direction: str,
    ) -> IntegrityError:
        safe_sender = sender if sender is not None and len(sender) <= 128 else None
        log.info(
            "rejected sealed %s: %s (sender=%r kid=%r id=%r)",
            direction,
            reason,
            safe_sender,
            kid,
            mid,
        )
        return IntegrityError(service=safe_sender, reason=reason)
