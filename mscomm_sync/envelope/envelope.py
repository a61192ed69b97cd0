"""The sealed envelope: how one request or response is sealed and opened, in both versions.

Trust model: the network between services is hostile. An attacker there can
read, drop, reorder, replay, reflect and rewrite any bytes, headers included,
and may hold the keys of *other* services. Against that attacker this module
guarantees, for every message it opens:

* the body, its content type and (v2) its end-to-end headers are
  confidential and unmodified (AES-256-GCM under a key derived freshly for
  every message, so nonces never repeat);
* the message was sealed by the claimed sender, for this recipient, in this
  direction, for this HTTP method and endpoint with query, and, for a
  response, with this status, in answer to this request. In protocol v2
  only the two services of the pair can seal it; in v1 anyone holding the
  sender's shared key can (see ``docs/security.md``);
* it is fresh (timestamp within the window) and, for requests, delivered once
  (message id recorded in a replay store after a successful open, and never
  older than the store's memory).

Every failure raises :class:`~mscomm_sync.errors.IntegrityError` with one fixed
message; the reason goes to the ``mscomm_sync.envelope`` log only. This module
knows nothing of HTTP clients or WSGI: callers pass the method, the canonical
target, the headers and the body. The wire format is in ``docs/protocol.md``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Callable, Optional, Union

from cryptography.exceptions import InvalidTag

from .._fast import memo
from ..errors import ConfigurationError, IntegrityError, ReplayGapError
from ..keyring import Keyring, validate_service_name
from ..replay import MemoryReplayStore, ReplayStore
from ..replay.store import remembers_since
from ..trust.identity import Identity
from ..trust.keys import PrivateKey, PublicKey
from ..trust.store import TrustStore
from .fields import FieldError, encode_section
from .headers import (
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SERVICE,
    SEALED_CONTENT_TYPE,
    SealFields,
    bound_method,
    parse_seal,
    seal_version,
)
from .messages import REQUEST, RESPONSE, Binding, Opened, Sealed
from .v1 import open_v1, seal_v1
from .v2 import open_v2, seal_v2

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_VERSIONS",
    "DEFAULT_WINDOW",
    "SEALING_OVERHEAD",
    "Envelope",
]

log = logging.getLogger("mscomm_sync.envelope")

#: How far, in seconds, a message's timestamp may be from the receiver's clock.
DEFAULT_WINDOW = 60.0
#: The largest plaintext body a receiver accepts unless told otherwise.
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
#: The protocol versions an envelope speaks unless told otherwise.
DEFAULT_VERSIONS = frozenset({"1", "2"})
_TAG_BYTES = 16
#: Room, past the body's limit, for v2's sealed header fields.
_SECTION_ROOM = 64 * 1024
#: How much longer than its plaintext a sealed body may be (v2: two tags and the fields).
SEALING_OVERHEAD = _TAG_BYTES * 2 + _SECTION_ROOM
_MAX_CONTENT_TYPE = 1024
_INF = float("inf")
_Body = Union[bytes, bytearray, memoryview]
_Headers = Sequence[tuple[str, str]]
_Opener = Callable[[_Body], tuple[Optional[str], list[tuple[str, str]], bytes]]


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
    """One service's side of the envelope protocol, in both its versions.

    A request is sealed with protocol v2 whenever this service has a private
    key and the recipient's public key is trusted, else with v1 if both
    shared keys are there; with neither, sealing fails before anything is
    sent. An answer uses its request's version.

    Args:
        service_name: this service's name; it seals as this sender and opens
            only messages addressed to it.
        keyring: v1's shared keys; defaults to the environment
            (``<NAME>_ENCRYPTION_KEY``).
        identity: v2's private keys of this service; defaults to the
            environment (``<NAME>_PRIVATE_KEY``).
        trust: v2's public keys of the peers; defaults to ``$MSCOMM_TRUST``
            and ``<NAME>_PUBLIC_KEY``.
        versions: the protocol versions to seal and open (``{"1", "2"}``).
        window: how far, in seconds, a message's timestamp may be from now.
        replay_store: remembers request ids; defaults to a
            :class:`~mscomm_sync.replay.MemoryReplayStore`.
        max_body_size: the largest plaintext body opened; a sealed body longer
            than this plus its 16-byte tag (and, in v2, its sealed headers) is
            rejected before any cryptographic work.
        clock: wall-clock source, injectable for tests.

    Raises:
        ConfigurationError: an argument is invalid.
    """

    def __init__(
        self,
        service_name: str,
        *,
        keyring: Optional[Keyring] = None,
        identity: Optional[Identity] = None,
        trust: Optional[TrustStore] = None,
        versions: Collection[str] = DEFAULT_VERSIONS,
        window: float = DEFAULT_WINDOW,
        replay_store: Optional[ReplayStore] = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service_name = validate_service_name(service_name)
        number = isinstance(window, (int, float)) and not isinstance(window, bool)
        if not number or not 0 < window < _INF:
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
        self.versions = frozenset(versions)
        if not self.versions or not self.versions <= DEFAULT_VERSIONS:
            raise ConfigurationError(
                'versions must be some of "1" and "2"', variable="versions", reason="invalid"
            )
        self.keyring = keyring if keyring is not None else Keyring()
        self.identity = identity if identity is not None else Identity(self.service_name)
        self.trust = trust if trust is not None else TrustStore(clock=clock)
        self.window = float(window)
        self.replay_store: ReplayStore = (
            replay_store if replay_store is not None else MemoryReplayStore(clock=clock)
        )
        self.max_body_size = max_body_size
        self._clock = clock

    def __repr__(self) -> str:
        versions = ",".join(sorted(self.versions))
        return (
            f"<Envelope service={self.service_name!r} versions={versions} window={self.window:g}>"
        )

    # -- sealing ---------------------------------------------------------

    def seal_request(
        self,
        *,
        recipient: str,
        method: str,
        target: str,
        body: bytes = b"",
        content_type: Optional[str] = None,
        headers: Optional[_Headers] = None,
    ) -> Sealed:
        """Seal a request from this service to ``recipient``.

        Args:
            recipient: the service the request is for.
            method: the HTTP method.
            target: the canonical endpoint and query (``target_from_endpoint``).
            body: the plaintext body; may be empty.
            content_type: the plaintext's ``Content-Type``.
            headers: the end-to-end headers to seal (v2; names lower case;
                see :func:`~mscomm_sync.envelope.fields.sealable`). In v1
                they are not sealed, and the caller sends them in clear.

        Raises:
            ConfigurationError: an invalid recipient or method, a header that
                cannot be sealed, or no key material to seal for ``recipient``
                with any allowed version (the message says what is missing).
        """
        if not _valid_sender(recipient):
            validate_service_name(recipient, what="recipient")  # raises
        binding = Binding._make(
            REQUEST, self.service_name, recipient, _method(method), target, "", ""
        )
        if "2" in self.versions and self.identity.available():
            peer = self.trust.sealing_key(recipient)
            if peer is not None:
                own = self.identity.current
                return self._seal_v2(own, peer, binding, body, content_type, headers)
        if "1" in self.versions:
            problem = self._v1_problem(recipient)
            if problem is None:
                return self._seal_v1(binding, body, content_type)
        else:
            problem = "protocol v1 is not allowed here"
        raise ConfigurationError(
            f"cannot seal a request for {recipient!r}: "
            + (
                "protocol v2 is not allowed here"
                if "2" not in self.versions
                else "no public key of it is trusted"
                if self.trust.sealing_key(recipient) is None
                else "this service has no private key of its own"
            )
            + f" (protocol v2 needs a public key of it, in the trust file named by MSCOMM_TRUST"
            f" or in {self.trust.variable(recipient)}, and this service's own private key, in"
            f" {self.identity.variable} or {self.identity.variable}_FILE), and {problem}",
            variable=None,
            reason="no key for recipient",
        )

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
        headers: Optional[_Headers] = None,
        request: Optional[Opened] = None,
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
            headers: the end-to-end response headers to seal (v2).
            request: the opened request; its version (and, in v2, its pair of
                keys) is the answer's. ``None`` answers with v1.

        Raises:
            ConfigurationError: no usable key to answer with.
        """
        binding = Binding._make(
            RESPONSE, self.service_name, recipient, _method(method), target, str(status), reply_to
        )
        if request is not None and request.version == "2":
            # Answer with the pair the request used: its recipient key is ours.
            peer_kid, own_kid = request.key_id[:16], request.key_id[17:]
            own = self.identity.find(own_kid)
            peer = self.trust.find(recipient, peer_kid)
            if own is None or peer is None:
                raise ConfigurationError(
                    "the keys the request was sealed with are no longer there to answer it",
                    reason="keys gone",
                )
            return self._seal_v2(own, peer, binding, body, content_type, headers)
        return self._seal_v1(binding, body, content_type)

    def _v1_problem(self, recipient: str) -> Optional[str]:
        """Return why v1 cannot seal for ``recipient`` (both keys are needed), or ``None``."""
        for service in (self.service_name, recipient):
            try:
                self.keyring.keys_for(service)
            except ConfigurationError as exc:
                return f"for protocol v1, {exc.variable or 'a key'} is {exc.reason}"
        return None

    def _seal_v1(self, binding: Binding, body: bytes, content_type: Optional[str]) -> Sealed:
        key = self.keyring.keys_for(self.service_name).sealing
        mid, ts = _new_message_id(), str(int(self._clock()))
        seal, sealed = seal_v1(key, binding, ts, mid, body, _content_type(content_type))
        return Sealed._make(self._headers(seal), (sealed,), mid.hex(), int(ts), "1", key.kid)

    def _seal_v2(
        self,
        own: PrivateKey,
        peer: PublicKey,
        binding: Binding,
        body: bytes,
        content_type: Optional[str],
        headers: Optional[_Headers],
    ) -> Sealed:
        _content_type(content_type)  # the same bound as v1
        try:
            section = encode_section(content_type, headers or ())
        except FieldError as exc:
            raise ConfigurationError(
                f"cannot seal the headers: {exc}", reason="bad header"
            ) from None
        mid, ts = _new_message_id(), str(int(self._clock()))
        seal, pair, chunks = seal_v2(own, peer, binding, ts, mid, body, section)
        return Sealed._make(self._headers(seal), chunks, mid.hex(), int(ts), "2", pair)

    def _headers(self, seal: str) -> dict[str, str]:
        return {
            HEADER_ENCRYPTED: "true",
            HEADER_SERVICE: self.service_name,
            HEADER_SEAL: seal,
            "Content-Type": SEALED_CONTENT_TYPE,
        }

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
            without_body = Opened._make(
                opened.sender, b"", None, opened.message_id, opened.key_id,
                opened.timestamp, opened.version, (),
            )  # fmt: skip
            raise ReplayGapError(
                service=opened.sender,
                message_id=opened.message_id,
                not_before=since,
                request=without_body,
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
        request: Optional[Sealed] = None,
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
            request: the sealed request: the answer must use its version
                and, in v2, its pair of keys the other way round.

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
        if request is not None:
            expected = request.pair
            if request.version == "2":
                expected = f"{request.pair[17:]}-{request.pair[:16]}"
            if fields.version != request.version or (
                request.version == "2" and fields.kid != expected
            ):
                raise _reject("answer sealed otherwise than its request", binding, fields)
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

        if len(body) > self.max_body_size + SEALING_OVERHEAD:
            raise reject("body too large")
        if headers.get(HEADER_ENCRYPTED) != "true":  # exactly; "TRUE" is not the protocol
            raise reject("not sealed")
        if fields is None:
            version = seal_version(seal)
            raise reject(
                "malformed envelope" if version in ("v=1", "v=2") else "unsupported version"
            )
        if fields.version not in self.versions:
            raise reject(f"protocol v{fields.version} is not allowed here")
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
        """Find the keys, check freshness, and decrypt; the envelope's form is already checked."""
        opener = (
            self._opener_v2(binding, fields)
            if fields.version == "2"
            else self._opener_v1(binding, fields, body)
        )
        ts = int(fields.timestamp)
        # Whole seconds, the same both ways: now - W <= ts <= now + W.
        now, window = int(self._clock()), int(self.window)
        if not now - window <= ts <= now + window:
            raise _reject("stale timestamp", binding, fields)
        try:
            content_type, sealed_headers, plaintext = opener(body)
        except (InvalidTag, UnicodeDecodeError):
            raise _reject("bad tag", binding, fields) from None
        except (FieldError, ValueError):
            raise _reject("malformed sealed headers", binding, fields) from None
        if len(plaintext) > self.max_body_size:
            raise _reject("body too large", binding, fields)
        return Opened._make(
            binding.sender,
            plaintext,
            content_type,
            fields.message_id,
            fields.kid,
            ts,
            fields.version,
            tuple(sealed_headers),
        )

    def _opener_v1(self, binding: Binding, fields: SealFields, body: _Body) -> _Opener:
        try:
            keys = self.keyring.keys_for(binding.sender)
        except ConfigurationError as exc:
            raise _reject(
                f"no usable key for sender ({exc.variable}: {exc.reason})", binding, fields
            ) from None
        key = keys.find(fields.kid)
        if key is None:
            raise _reject("unknown key id", binding, fields)
        if len(body) > self.max_body_size + _TAG_BYTES:
            raise _reject("body too large", binding, fields)

        def opener(data: _Body) -> tuple[Optional[str], list[tuple[str, str]], bytes]:
            content_type, plaintext = open_v1(key, binding, fields, data)
            return content_type, [], plaintext

        return opener

    def _opener_v2(self, binding: Binding, fields: SealFields) -> _Opener:
        try:
            own = self.identity.find(fields.recipient_kid) if self.identity.available() else None
            peer = self.trust.find(binding.sender, fields.sender_kid)
        except ConfigurationError as exc:
            raise _reject(
                f"unusable keys ({exc.variable}: {exc.reason})", binding, fields
            ) from None
        if own is None:
            raise _reject("unknown recipient key id", binding, fields)
        if peer is None:
            raise _reject("no trusted public key of the sender with that id", binding, fields)
        return lambda data: open_v2(own, peer, binding, fields, data)


def _content_type(content_type: Optional[str]) -> bytes:
    ct_plain = content_type.encode("utf-8") if content_type else b""
    if len(ct_plain) > _MAX_CONTENT_TYPE:
        raise ConfigurationError(
            f"content type longer than {_MAX_CONTENT_TYPE} bytes", reason="invalid content type"
        )
    return ct_plain


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
        extra={
            "mscomm.event": "seal rejected",
            "mscomm.direction": direction or REQUEST,
            "mscomm.reason": reason,
            "mscomm.caller": safe_sender,
            "mscomm.kid": kid,
            "mscomm.message_id": mid,
        },
    )
    return IntegrityError(service=safe_sender, reason=reason)
