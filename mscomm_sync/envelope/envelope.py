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

This module chooses (the version, the keys, the replay check); the work is in
:mod:`.sealing`, :mod:`.opening` and, for the cryptography, :mod:`.v1` and
:mod:`.v2`. The sizes and defaults are in :mod:`.limits`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Callable, Optional

from ..errors import ConfigurationError, ReplayGapError
from ..keyring import Keyring, validate_service_name
from ..replay import MemoryReplayStore, ReplayStore
from ..trust.identity import Identity
from ..trust.store import TrustStore
from .headers import SealFields, bound_method
from .limits import DEFAULT_MAX_BODY_SIZE, DEFAULT_VERSIONS, DEFAULT_WINDOW, SEALING_OVERHEAD
from .messages import REQUEST, RESPONSE, Binding, Opened, Sealed
from .opening import (
    Body,
    is_service_name,
    open_message,
    read_envelope,
    v1_key,
    v2_keys,
)
from .rejection import reject
from .sealing import seal_with_v1, seal_with_v2, v1_problem

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_VERSIONS",
    "DEFAULT_WINDOW",
    "SEALING_OVERHEAD",
    "Envelope",
]

_INF = float("inf")
_Headers = Sequence[tuple[str, str]]


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

    def request_version(self, recipient: str) -> Optional[str]:
        """Return the protocol version :meth:`seal_request` would use for ``recipient`` now.

        ``"2"`` when v2 is allowed, a public key of ``recipient`` is trusted and
        this service has a private key; else ``"1"`` when v1 is allowed and both
        shared keys are there; else ``None`` (sealing would raise).
        """
        # The trust store caches what it found (or did not), so asking it first
        # keeps a v1-only fleet from reading the environment on every message.
        if (
            "2" in self.versions
            and self.trust.sealing_key(recipient) is not None
            and self.identity.available()
        ):
            return "2"
        if "1" in self.versions and v1_problem(self.keyring, self.service_name, recipient) is None:
            return "1"
        return None

    def seal_request(
        self,
        *,
        recipient: str,
        method: str,
        target: str,
        body: bytes = b"",
        content_type: Optional[str] = None,
        headers: Optional[_Headers] = None,
        version: Optional[str] = None,
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
            version: what :meth:`request_version` just returned for
                ``recipient``, so that a caller who asked does not have it
                decided twice; ``None`` (or a version not allowed here):
                decide now.

        Raises:
            ConfigurationError: an invalid recipient or method, a header that
                cannot be sealed, or no key material to seal for ``recipient``
                with any allowed version (the message says what is missing).
        """
        if not is_service_name(recipient):
            validate_service_name(recipient, what="recipient")  # raises
        binding = Binding._make(
            REQUEST, self.service_name, recipient, _method(method), target, "", ""
        )
        if version not in self.versions:
            version = self.request_version(recipient)
        if version == "2":
            peer = self.trust.sealing_key(recipient)
            if peer is not None:  # None only if the trust file changed just now: refused below
                own = self.identity.current
                return seal_with_v2(own, peer, binding, self._clock, body, content_type, headers)
        if version == "1":
            return seal_with_v1(self.keyring, binding, self._clock, body, content_type)
        problem = (
            v1_problem(self.keyring, self.service_name, recipient)
            if "1" in self.versions
            else "protocol v1 is not allowed here"
        )
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
            return seal_with_v2(own, peer, binding, self._clock, body, content_type, headers)
        return seal_with_v1(self.keyring, binding, self._clock, body, content_type)

    # -- opening ---------------------------------------------------------

    def open_request(
        self, *, method: str, target: str, headers: Mapping[str, str], body: Body
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
        sender, fields, bound = read_envelope(
            REQUEST, headers, body, None, self.versions, self.max_body_size, method
        )
        binding = Binding._make(REQUEST, sender, self.service_name, bound, target, "", "")
        opened = self._open(binding, fields, body)
        # A store that does not say when it began remembers everything it was given.
        since = getattr(self.replay_store, "not_before", None)
        if since is not None and opened.timestamp < since:
            reject("sealed before the replay store began", binding, fields)
            without_body = Opened._make(
                opened.sender, b"", None, opened.message_id, opened.key_id,
                opened.timestamp, opened.version, (),
            )  # fmt: skip
            raise ReplayGapError(
                service=opened.sender,
                message_id=opened.message_id,
                not_before=float(since),
                request=without_body,
            )
        expires = opened.timestamp + self.window + 1.0
        if not self.replay_store.add(f"{opened.sender}/{opened.message_id}", expires):
            raise reject("replay", binding, fields)
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
        body: Body,
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
        claimed, fields, bound = read_envelope(
            RESPONSE, headers, body, sender, self.versions, self.max_body_size, method
        )
        binding = Binding._make(
            RESPONSE,
            claimed,
            self.service_name,
            bound,
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
                raise reject("answer sealed otherwise than its request", binding, fields)
        return self._open(binding, fields, body)

    def _open(self, binding: Binding, fields: SealFields, body: Body) -> Opened:
        """Find the keys the seal names, then check freshness and decrypt."""
        keys = (
            v2_keys(self.identity, self.trust, binding, fields)
            if fields.version == "2"
            else v1_key(self.keyring, binding, fields, body, self.max_body_size)
        )
        now, window = int(self._clock()), int(self.window)
        return open_message(binding, fields, body, keys, now, window, self.max_body_size)


def _method(method: str) -> str:
    bound = bound_method(method)
    if bound is None:
        raise ConfigurationError("method must be 1-16 letters", reason="invalid method")
    return bound
