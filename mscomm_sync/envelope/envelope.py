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
target (see :func:`~mscomm_sync.envelope.target.canonical_target`), the headers
and the body.

The wire format is specified in ``docs/protocol.md``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Callable, Optional, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._fast import memo
from ..errors import ConfigurationError, IntegrityError, ReplayGapError
from ..keyring import Keyring, validate_service_name
from ..replay import MemoryReplayStore, ReplayStore
from ..replay.store import remembers_since
from .crypto import BODY_NONCE, META_NONCE, VERSION, derive_message_key, message_aad
from .headers import (
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SERVICE,
    SEALED_CONTENT_TYPE,
    SealFields,
    bound_method,
    format_seal,
    parse_seal,
    seal_version,
)
from .messages import REQUEST, RESPONSE, Binding, Opened, Sealed

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_WINDOW", "Envelope"]

log = logging.getLogger("mscomm_sync.envelope")

#: How far, in seconds, a message's timestamp may be from the receiver's clock.
DEFAULT_WINDOW = 60.0
#: The largest plaintext body a receiver accepts unless told otherwise.
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
_TAG_BYTES = 16
_MAX_CONTENT_TYPE = 1024
_INF = float("inf")
_Body = Union[bytes, bytearray, memoryview]


def _new_message_id() -> bytes:
    # One place draws message ids, so test-vector generation can pin it.
    return os.urandom(16)


@memo(1024)
def _valid_sender(name: str) -> bool:
    try:
        validate_service_name(name)
    except ConfigurationError:
        return False
    return True


class Envelope:
    """One service's side of the envelope protocol.

    Args:
        service_name: this service's name; it seals as this sender and opens
            only messages addressed to it.
        keyring: where keys come from; defaults to the environment.
        window: how far, in seconds, a message's timestamp may be from now.
        replay_store: remembers request ids; defaults to a
            :class:`~mscomm_sync.replay.MemoryReplayStore`.
        max_body_size: the largest plaintext body opened; a sealed body longer
            than this plus its 16-byte tag is rejected before any
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
        if (
            isinstance(window, bool)
            or not isinstance(window, (int, float))
            or not 0 < window < _INF
        ):
            # NaN and infinity would switch the freshness check off.
            raise ConfigurationError(
                "window must be a finite, positive number of seconds",
                variable="window",
                reason="invalid",
            )
        if max_body_size < 0:
            raise ConfigurationError(
                "max_body_size must not be negative", variable="max_body_size", reason="invalid"
            )
        self.keyring = keyring if keyring is not None else Keyring()
        self.window = float(window)
        self.replay_store: ReplayStore = (
            replay_store if replay_store is not None else MemoryReplayStore(clock=clock)
        )
        self.max_body_size = max_body_size
        self._clock = clock

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
            target: the canonical path and query (``target_from_url``).
            body: the plaintext body; may be empty.
            content_type: the plaintext's ``Content-Type``.

        Raises:
            ConfigurationError: an invalid recipient or method, or no usable
                key for this service.
        """
        if not _valid_sender(recipient):
            validate_service_name(recipient, what="recipient")  # raises
        binding = Binding._make(
            REQUEST, self.service_name, recipient, _method(method), target, "", ""
        )
        return self._seal(binding, body, content_type)

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
        binding = Binding._make(
            RESPONSE, self.service_name, recipient, _method(method), target, str(status), reply_to
        )
        return self._seal(binding, body, content_type)

    def _seal(self, binding: Binding, body: bytes, content_type: Optional[str]) -> Sealed:
        ct_plain = content_type.encode("utf-8") if content_type else b""
        if len(ct_plain) > _MAX_CONTENT_TYPE:
            raise ConfigurationError(
                f"content type longer than {_MAX_CONTENT_TYPE} bytes", reason="invalid content type"
            )
        key = self.keyring.keys_for(self.service_name).sealing
        mid_bytes = _new_message_id()
        mid = mid_bytes.hex()
        ts = str(int(self._clock()))
        aad = message_aad(VERSION, key.kid, binding, ts, mid)
        aead = AESGCM(derive_message_key(key.secret, mid_bytes))
        sealed_ct = aead.encrypt(META_NONCE, ct_plain, aad).hex()
        headers = {
            HEADER_ENCRYPTED: "true",
            HEADER_SERVICE: self.service_name,
            HEADER_SEAL: format_seal(VERSION, key.kid, ts, mid, sealed_ct),
            "Content-Type": SEALED_CONTENT_TYPE,
        }
        return Sealed._make(headers, aead.encrypt(BODY_NONCE, body, aad), mid, int(ts))

    # -- opening ---------------------------------------------------------

    def open_request(
        self, *, method: str, target: str, headers: Mapping[str, str], body: _Body
    ) -> Opened:
        """Verify and open a request addressed to this service.

        The message id is recorded in the replay store only after the
        message verified, so a forged message cannot burn a real one's id.
        A message sealed in an earlier second than the replay store's
        ``not_before`` is refused with :class:`ReplayGapError`: the store
        cannot know whether it was delivered before.

        Args:
            method: the HTTP method it arrived with.
            target: its canonical target (``target_from_environ``).
            headers: its headers; lookups use the names in
                ``ENVELOPE_HEADERS`` (a case-insensitive mapping works).
            body: the sealed body (a ``bytearray`` or ``memoryview`` is read, never kept).

        Raises:
            ReplayGapError: it verified but was sealed before the replay
                store's ``not_before`` (an ``IntegrityError`` too).
            IntegrityError: for every reason it cannot be accepted.
        """
        sender, fields = self._envelope_of(REQUEST, headers, body, None)
        binding = Binding._make(
            REQUEST, sender, self.service_name, self._method(method, sender, fields), target, "", ""
        )
        opened = self._open(binding, fields, body)
        since = remembers_since(self.replay_store)
        if opened.timestamp < since:
            _reject("sealed before the replay store began", binding, fields)
            raise ReplayGapError(
                service=opened.sender, message_id=opened.message_id, not_before=since
            )
        expires = opened.timestamp + self.window + 1.0
        if not self.replay_store.add(f"{opened.sender}/{opened.message_id}", expires):
            raise _reject("replay", binding, fields)
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
        body: _Body,
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
        claimed, fields = self._envelope_of(RESPONSE, headers, body, sender)
        binding = Binding._make(
            RESPONSE,
            claimed,
            self.service_name,
            self._method(method, claimed, fields),
            target,
            str(status),
            reply_to,
        )
        return self._open(binding, fields, body)

    def _envelope_of(
        self, direction: str, headers: Mapping[str, str], body: _Body, expected: Optional[str]
    ) -> tuple[str, SealFields]:
        """Check what can be checked before any key is looked up; return the sender and seal."""
        sender = headers.get(HEADER_SERVICE)
        seal = headers.get(HEADER_SEAL) or ""
        fields = parse_seal(seal)

        def reject(reason: str) -> IntegrityError:
            return _reject(reason, None, fields, direction=direction, sender=sender)

        if len(body) > self.max_body_size + _TAG_BYTES:
            raise reject("body too large")
        if (headers.get(HEADER_ENCRYPTED) or "").lower() != "true":
            raise reject("not sealed")
        if fields is None:
            raise reject(
                "malformed envelope" if seal_version(seal) == "v=1" else "unsupported version"
            )
        if sender is None:
            raise reject("malformed envelope")
        if not _valid_sender(sender):
            raise reject("malformed sender")
        if expected is not None and sender != expected:
            raise reject("unexpected sender")
        return sender, fields

    @staticmethod
    def _method(method: str, sender: str, fields: SealFields) -> str:
        bound = bound_method(method)
        if bound is None:
            raise _reject("malformed envelope", None, fields, sender=sender)
        return bound

    def _open(self, binding: Binding, fields: SealFields, body: _Body) -> Opened:
        """Find the key, check freshness, and decrypt; the envelope's form is already checked."""
        try:
            keys = self.keyring.keys_for(binding.sender)
        except ConfigurationError as exc:
            raise _reject(
                f"no usable key for sender ({exc.variable}: {exc.reason})", binding, fields
            ) from None
        key = keys.find(fields.kid)
        if key is None:
            raise _reject("unknown key id", binding, fields)
        ts = int(fields.timestamp)
        if abs(self._clock() - ts) > self.window:
            raise _reject("stale timestamp", binding, fields)
        mid = fields.message_id
        aad = message_aad(VERSION, fields.kid, binding, fields.timestamp, mid)
        aead = AESGCM(derive_message_key(key.secret, bytes.fromhex(mid)))
        try:
            # Lower-case hex of even length (parse_seal): one spelling.
            sealed_ct = bytes.fromhex(fields.sealed_content_type)
            content_type = aead.decrypt(META_NONCE, sealed_ct, aad).decode("utf-8")
            plaintext = aead.decrypt(BODY_NONCE, body, aad)
        except (InvalidTag, UnicodeDecodeError):
            raise _reject("bad tag", binding, fields) from None
        return Opened._make(binding.sender, plaintext, content_type or None, mid, fields.kid, ts)


def _method(method: str) -> str:
    bound = bound_method(method)
    if bound is None:
        raise ConfigurationError("method must be 1-16 letters", reason="invalid method")
    return bound


def _reject(
    reason: str,
    binding: Optional[Binding],
    fields: Optional[SealFields],
    *,
    direction: Optional[str] = None,
    sender: Optional[str] = None,
) -> IntegrityError:
    """Log why a message was rejected (INFO, this side only) and return the opaque error."""
    if binding is not None:
        direction, sender = binding.direction, binding.sender
    safe_sender = sender if sender is not None and len(sender) <= 128 else None
    kid, mid = (fields.kid, fields.message_id) if fields is not None else (None, None)
    log.info(
        "rejected sealed %s: %s (sender=%r kid=%r id=%r)",
        direction or REQUEST,
        reason,
        safe_sender,
        kid,
        mid,
    )
    return IntegrityError(service=safe_sender, reason=reason)
