"""One sealed attempt: seal, send once, read within the deadline, verify and open.

Trust model: the network and every instance URL in the registry are
untrusted. An answer is believed only if it opens under the target service's
key *for this very request* (the envelope binds the request's message id,
method, target and the status). An unsealed answer to a sealed request is a
downgrade and is refused, unless the caller explicitly allowed plaintext
replies for that target; unsealed 400/401/403/413 are the peer middleware's
refusals and are raised as :class:`~mscomm_sync.errors.RequestRejectedError`.

:class:`SealedTransport` is an ``HTTPAdapter`` and sends through
``super().send()``, so urllib3's pools and ``responses`` work as usual, with
urllib3's own retries off: urllib3 would resend the same sealed bytes, which
the peer's replay cache rightly refuses. Whether to try again is the call
loop's decision (:mod:`mscomm_sync.client.attempts`); the transport never
calls back into it. Transport failures are translated here, once, into
:class:`~mscomm_sync.client.failures.AttemptFailed`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from typing import Any, Optional, Union
from urllib.parse import urlsplit, urlunsplit

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, get_environ_proxies

from .._fast import memo
from ..buffers import BufferPool
from ..envelope import (
    ENVELOPE_HEADERS,
    HEADER_ENCRYPTED,
    HEADER_SEALED_BODY,
    NOT_EXECUTED_CONTENT_TYPE,
    Opened,
    Sealed,
)
from ..envelope.headers import HEADER_SEAL, parse_seal
from ..envelope.limits import TAG_BYTES, sealing_overhead
from ..errors import (
    ConfigurationError,
    DeadlineSpentOnArrivalError,
    InsecureResponseError,
    IntegrityError,
    MscommError,
    RequestRejectedError,
    ResponseTooLargeError,
    UnverifiedAnswerError,
)
from ..telemetry.calls import NO_ATTEMPT, AttemptRecord
from ..telemetry.context import HEADER_DEADLINE_SPENT
from .answer import read_answer
from .call import HEADER_REQUEST_ID, Call, end_to_end
from .deadline import AttemptDeadline, Bound
from .failures import AttemptFailed
from .headers import drop_headers, header_names, header_pairs, header_value
from .pools import deadline_pools, reading

__all__ = ["DEFAULT_POOL_MAXSIZE", "REFUSAL_STATUSES", "SealedTransport"]

log = logging.getLogger("mscomm_sync.client")

#: Unsealed statuses that mean the peer's middleware refused the request.
REFUSAL_STATUSES = frozenset({400, 401, 403, 413})
DEFAULT_POOL_MAXSIZE = 32
#: A sealed request body this large or larger is let go once sent, so
#: ``resp.request.body`` is ``None`` after such a call.
RELEASE_SENT_BODY = 64 * 1024
#: The most of an unwanted body (a refusal's) read to keep its connection.
_DRAIN = 4096
#: Instances whose proxy and CA settings are remembered.
_MAX_ENVIRONMENTS = 1024

#: What an opened answer loses (names lower case): the envelope's and the sealed length.
_STRIP = frozenset(h.lower() for h in (*ENVELOPE_HEADERS, HEADER_SEALED_BODY, "Content-Length"))
_SEALED_BODY = HEADER_SEALED_BODY.lower()
_REQUEST_ID = HEADER_REQUEST_ID.lower()
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
Environment = tuple[dict[str, str], Union[bool, str]]


class SealedTransport(HTTPAdapter):
    """Send one sealed attempt of a call to one instance.

    Args:
        pool_connections: how many hosts' pools to keep.
        pool_maxsize: connections kept per host (size it to your threads).
    """

    def __init__(self, *, pool_connections: int = 10, pool_maxsize: int = DEFAULT_POOL_MAXSIZE):
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize)
        self.pool_maxsize = pool_maxsize
        #: Buffers that large sealed answers are read into (ciphertext only).
        self.buffers = BufferPool()
        # requests re-reads proxies, netrc and CA settings from the
        # environment on every call; an instance's are read once. Keyed by
        # trust_env too, so turning it off (or on) later takes effect.
        self._environment = memo(_MAX_ENVIRONMENTS)(_environment)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pools as ``HTTPAdapter`` does, with answers read within the deadline."""
        super().init_poolmanager(*args, **kwargs)
        deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Build a proxy's pools as ``HTTPAdapter`` does, with answers read within the deadline."""
        return deadline_pools(super().proxy_manager_for(proxy, **proxy_kwargs))

    def send_attempt(
        self,
        call: Call,
        instance_url: str,
        timeout: tuple[float, float],
        record: AttemptRecord = NO_ATTEMPT,
    ) -> Response:
        """Seal ``call`` afresh for ``instance_url``, send it once, and open the answer.

        In protocol v2 the call's context travels inside the seal with its
        headers: the budget this attempt is waited for (``X-Mscomm-Deadline``,
        in milliseconds), the trace context, and an inherited request id.
        In v1 none of it is sent.

        Args:
            call: the call this attempt belongs to.
            instance_url: the instance's base URL, from the registry.
            timeout: ``(connect, read)`` for this attempt; reading the body
                also stops when the call's deadline passes.
            record: the attempt's telemetry record (its span is current
                while the attempt runs).

        Returns:
            The response, its content the opened plaintext.

        Raises:
            AttemptFailed: the transport failed (nothing was answered).
            DeadlineExceededError: the deadline passed while reading the body.
            DeadlineSpentOnArrivalError: the service got it with its deadline
                spent, and said (sealed) that it did not run it.
            RequestRejectedError: the peer's middleware refused the request.
            InsecureResponseError: an unsealed answer was not allowed.
            IntegrityError: a sealed answer failed verification.
        """
        with record:
            return self._send(call, instance_url, timeout, record)

    def _send(
        self, call: Call, instance_url: str, timeout: tuple[float, float], record: AttemptRecord
    ) -> Response:
        url = instance_url.rstrip("/") + call.suffix
        envelope = call.envelope
        # Headers and context are sealed only in v2 (v1 sends the headers in clear).
        version = envelope.request_version(call.service)
        sealed = envelope.seal_request(
            recipient=call.service,
            method=call.method,
            target=call.target,
            body=call.body,
            content_type=call.content_type,
            headers=_sealed_headers(call, record, timeout[1]) if version == "2" else None,
            version=version,
        )
        if call.idempotency_key is not None and sealed.version != "2":
            # v1 seals no header: the key would travel in clear, unbound.
            raise ConfigurationError(
                f"an idempotency key travels sealed, which needs protocol v2 with {call.service}"
                " (this service's private key and its trusted public key)",
                variable="idempotency_key",
                reason="needs protocol v2",
            )
        record.sealed_with(sealed.version)
        attempt = _attempt(call, url, sealed)
        proxies, env_verify = self._environment(instance_url, call.trust_env)
        verify = env_verify if call.verify is True else call.verify
        # An attempt with a share of the deadline must have its whole answer
        # within it (a trickled answer fails over like a hung one).
        bound: Bound = (
            AttemptDeadline(call.deadline, timeout[1])
            if timeout[1] < call.deadline.remaining()
            else call.deadline
        )
        reading.deadline = bound
        try:
            response = super().send(attempt, False, timeout, verify, call.cert, proxies)
        except requests.RequestException as exc:
            failure = AttemptFailed.from_requests(exc)
            if call.deadline.remaining() <= 0:  # connecting, or the status line, outlasted it
                raise call.deadline.exceeded(sent=not failure.connect_phase) from exc
            raise failure from exc
        finally:
            reading.deadline = None
        # Sent: a large sealed body is not kept while the answer is read and
        # opened, nor in resp.request for as long as the caller holds the
        # answer (see BufferPool for what holding it cost).
        if sealed.length >= RELEASE_SENT_BODY:
            attempt.body = None
        request = Sealed._make(
            sealed.headers, (), sealed.message_id, sealed.timestamp, sealed.version, sealed.pair
        )
        del sealed
        sealed_reply = (response.headers.get(HEADER_ENCRYPTED) or "").lower() == "true"
        record.answered(response.status_code, sealed_reply)
        if not sealed_reply and not call.policy.allow_plaintext_replies:
            # A refusal or a downgrade: its body is never used, so never read
            # past a few bytes (enough to keep the connection for reuse).
            _discard(response, call, timeout[1])
            raise _refusal(call, response, url)
        overhead = sealing_overhead(request.version)
        _check_before_reading(call, response, sealed=sealed_reply, overhead=overhead)
        # Read here, so a reset mid-body fails this attempt. A sealed answer
        # is only opened, so it may be read into a kept buffer.
        data = read_answer(
            response,
            deadline=bound,
            limit=call.policy.max_answer_size,
            read_timeout=timeout[1],
            sealed=sealed_reply,
            buffers=self.buffers,
            overhead=overhead,
        )
        if not sealed_reply:
            log.debug(
                "plaintext reply accepted (service=%s status=%d)",
                call.service,
                response.status_code,
                extra={"mscomm.event": "plaintext reply", "mscomm.target": call.service,
                       "mscomm.status": response.status_code,
                       "mscomm.request_id": call.request_id},
            )  # fmt: skip
            return response
        return self._open(call, response, data, request)

    def _open(
        self,
        call: Call,
        response: Response,
        data: Union[bytes, bytearray, memoryview],
        request: Sealed,
    ) -> Response:
        headers = response.headers
        # One strict rule (docs/protocol.md): an answer HTTP gives no body
        # (to HEAD; 1xx, 204, 304) carries its sealed body in the header, and
        # only such an answer does.
        status = response.status_code
        carried = header_value(headers, _SEALED_BODY)
        if call.method == "HEAD" or status < 200 or status in (204, 304):
            if carried is None or data:
                raise UnverifiedAnswerError(service=call.service, reason="sealed body misplaced")
            data = _unb64(carried, call.service)
        elif carried is not None:
            raise UnverifiedAnswerError(service=call.service, reason="sealed body misplaced")
        try:
            opened = call.envelope.open_response(
                sender=call.service,
                method=call.method,
                target=call.target,
                status=response.status_code,
                reply_to=request.message_id,
                headers=headers,
                body=data,
                request=request,
            )
        except IntegrityError as exc:
            # The side that knows why says so, to its own operator (the peer never learns it).
            log.warning(
                "answer from service=%s refused: %s (status=%d request_id=%s)",
                call.service, exc.reason, status, call.request_id,
                extra={"mscomm.event": "answer refused", "mscomm.target": call.service,
                       "mscomm.reason": exc.reason, "mscomm.status": status,
                       "mscomm.request_id": call.request_id},
            )  # fmt: skip
            raise UnverifiedAnswerError(service=call.service, reason=exc.reason) from None
        finally:
            if isinstance(data, memoryview):  # read into a kept buffer: offer it back
                response._content = b""
                self.buffers.give(data)
        if len(opened.body) > call.policy.max_answer_size:
            # v2 may carry up to SEALING_OVERHEAD more than the plaintext: the
            # plaintext itself is held to the limit once opened.
            response.close()
            raise ResponseTooLargeError(call.service, call.policy.max_answer_size)
        _as_opened(response, opened, call.method)
        spent = status == 504 and opened.version == "2"
        if spent and response.headers.get(HEADER_DEADLINE_SPENT) == "true":
            # Sealed (v2 answers' headers are the sealed ones only), so only the
            # service can say it: our deadline was spent when the request
            # reached it, and its app never saw the request.
            response.close()
            log.warning(
                "service=%s did not run the request: its deadline was spent on arrival"
                " (request_id=%s)", call.service, call.request_id,
                extra={"mscomm.event": "deadline spent", "mscomm.target": call.service,
                       "mscomm.request_id": call.request_id},
            )  # fmt: skip
            raise DeadlineSpentOnArrivalError(call.service, call.deadline.seconds)
        if response.status_code == 503 and opened.content_type == NOT_EXECUTED_CONTENT_TYPE:
            # The service's middleware says, sealed, that it did not run this
            # request (its replay store is newer than the seal): seal it again.
            response.close()
            raise AttemptFailed.not_executed(
                RuntimeError("the service did not run the request"),
                _retry_after(response.headers.get("Retry-After")),
            )
        return response

    def close(self) -> None:
        """Close the connection pools and drop the kept read buffers."""
        super().close()
        self.buffers.clear()

    def __repr__(self) -> str:
        return f"<SealedTransport pool_maxsize={self.pool_maxsize}>"


def _sealed_headers(
    call: Call, record: AttemptRecord, read_timeout: float
) -> tuple[tuple[str, str], ...]:
    """Return what a v2 attempt seals besides the body: the call's headers and its context."""
    inherited_id = None if _REQUEST_ID in header_names(call.headers) else call.request_id
    budget = min(read_timeout, call.deadline.remaining())
    return end_to_end(call) + record.context_headers(inherited_id, budget)


def _attempt(call: Call, url: str, sealed: Sealed) -> PreparedRequest:
    """Return the prepared request that carries ``sealed`` to ``url``."""
    attempt = PreparedRequest()
    attempt.method = call.method
    attempt.url = url
    if sealed.version == "2":
        outgoing = dict(sealed.headers)  # every end-to-end header travels inside the seal
    else:
        outgoing = dict(header_pairs(call.headers))  # v1: in clear; later keys win below
        outgoing.update(sealed.headers)
    outgoing["Content-Length"] = str(sealed.length)
    outgoing["Accept-Encoding"] = "identity"
    # plan_call dropped any Transfer-Encoding: the sealed body has a length.
    attempt.headers = CaseInsensitiveDict(outgoing)
    # http.client sends the pieces one after the other: a large v2 body is not joined.
    chunks = sealed.pieces
    attempt.body = chunks[0] if len(chunks) == 1 else list(chunks)  # type: ignore[assignment]
    attempt.hooks = {"response": []}
    return attempt


def _refusal(call: Call, response: Response, url: str) -> MscommError:
    """Return the error an unsealed answer to a sealed request stands for (it is not allowed)."""
    status = response.status_code
    where = _without_query(url)  # the query may carry data; never logged
    if status in REFUSAL_STATUSES:
        log.warning(
            "rejected by service=%s status=%d url=%s request_id=%s",
            call.service, status, where, call.request_id,
            extra={"mscomm.event": "rejected", "mscomm.target": call.service,
                   "mscomm.status": status, "mscomm.url": where,
                   "mscomm.request_id": call.request_id},
        )  # fmt: skip
        # What it was sealed with, as it went on the wire: the seal header
        # of the very request refused (key ids are public; no key is read).
        sent = response.request.headers.get(HEADER_SEAL) if response.request else None
        seal = parse_seal(sent) if isinstance(sent, str) else None
        return RequestRejectedError(
            call.service,
            status,
            caller=call.envelope.service_name,
            key_id=seal.kid if seal is not None else None,
            version=seal.version if seal is not None else None,
        )
    log.warning(
        "unsealed answer from service=%s status=%d url=%s request_id=%s",
        call.service, status, where, call.request_id,
        extra={"mscomm.event": "unsealed answer", "mscomm.target": call.service,
               "mscomm.status": status, "mscomm.url": where,
               "mscomm.request_id": call.request_id},
    )  # fmt: skip
    return InsecureResponseError(service=call.service, status=status)


def _discard(response: Response, call: Call, read_timeout: float) -> None:
    """Read a small unwanted body so the connection can be reused; close on anything else."""
    declared = getattr(response.raw, "length_remaining", None)
    if isinstance(declared, int) and declared <= _DRAIN:
        try:
            read_answer(response, deadline=call.deadline, limit=_DRAIN, read_timeout=read_timeout)
            return
        except MscommError:
            pass  # read_answer closed it
    response.close()


def _check_before_reading(
    call: Call, response: Response, *, sealed: bool, overhead: int = TAG_BYTES
) -> None:
    """Refuse an answer that cannot be accepted, from its headers alone.

    A sealed answer must come as it was sealed: a ``Content-Encoding`` on it
    would have the client decompress bytes before verifying them. And an
    answer declaring more than the limit is refused before it is read.

    Raises:
        IntegrityError: a sealed answer with a ``Content-Encoding``.
        ResponseTooLargeError: the declared length is above the limit.
    """
    encoding = (header_value(response.headers, "content-encoding") or "identity").strip().lower()
    if sealed and encoding != "identity":
        response.close()
        log.warning(
            "sealed answer with Content-Encoding refused (service=%s request_id=%s)",
            call.service, call.request_id,
            extra={"mscomm.event": "answer refused", "mscomm.target": call.service,
                   "mscomm.reason": "content encoding on a sealed answer",
                   "mscomm.request_id": call.request_id},
        )  # fmt: skip
        raise UnverifiedAnswerError(
            service=call.service, reason="content encoding on a sealed answer"
        )
    declared = getattr(response.raw, "length_remaining", None)
    limit = call.policy.max_answer_size
    if isinstance(declared, int) and declared > limit + (overhead if sealed else 0):
        response.close()
        log.warning(
            "answer of %d bytes refused, above the limit of %d (service=%s request_id=%s)",
            declared, limit, call.service, call.request_id,
            extra={"mscomm.event": "answer too large", "mscomm.target": call.service,
                   "mscomm.declared": declared, "mscomm.limit": limit,
                   "mscomm.request_id": call.request_id},
        )  # fmt: skip
        raise ResponseTooLargeError(call.service, limit, declared)


def _as_opened(response: Response, opened: Opened, method: str) -> None:
    """Make ``response`` the opened answer: its plaintext body, content type and headers.

    A v2 answer's headers are the sealed ones only (repeats joined with
    ``", "``); the ones that came outside the seal are dropped, since anyone
    on the path could have written them. A v1 answer keeps its outer headers
    but the envelope's.
    """
    if opened.version == "2":
        joined: dict[str, str] = {}
        for name, value in opened.headers:  # sealed names are lower case
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        response.headers = CaseInsensitiveDict(joined)
    headers = response.headers
    drop_headers(headers, _STRIP)
    if opened.content_type is not None:
        headers["Content-Type"] = opened.content_type
    else:
        headers.pop("Content-Type", None)
    if opened.body or method != "HEAD":
        headers["Content-Length"] = str(len(opened.body))
    response._content = opened.body
    response.encoding = get_encoding_from_headers(headers)


def _environment(base_url: str, trust_env: bool) -> Environment:
    """Return the proxies and CA setting the environment gives ``base_url``."""
    if not trust_env:
        return {}, True
    proxies = dict(get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return proxies, bundle if bundle else True


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Return a ``Retry-After`` of whole seconds (0 to 60), or ``None``."""
    if value is None or not value.strip().isdigit():
        return None
    return float(min(int(value.strip()), 60))


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _unb64(text: str, service: str) -> bytes:
    """Decode strict URL-safe base64 without padding (one spelling of each body)."""
    try:
        if not _B64URL.match(text) or len(text) % 4 == 1:
            raise ValueError("not URL-safe base64 without padding")
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != text:
            raise ValueError("non-canonical base64")  # unused bits set in the last character
        return decoded
    except (binascii.Error, ValueError):
        raise UnverifiedAnswerError(
            service=service, reason="malformed sealed body header"
        ) from None
