"""The mounted adapter: each attempt sealed, sent, verified and opened.

Trust model: the network and every instance URL in the registry are
untrusted. An answer is believed only if it opens under the target service's
key *for this very request* (the envelope binds the request's message id,
method, target and the status). An unsealed answer to a sealed request is a
downgrade and is refused, unless the caller explicitly allowed plaintext
replies for that target; unsealed 400/401/403/413 are the peer middleware's
refusals and are raised as :class:`RequestRejectedError`.

:class:`ServiceAdapter` is mounted on ``mscomm://`` by
:class:`~mscomm_sync.client.MicroServiceClient`. Its :meth:`~ServiceAdapter.send`
runs a whole call (the client's call loop: breaker, instance choice,
retries); every attempt goes through :meth:`~ServiceAdapter.send_attempt`,
which seals afresh and calls ``HTTPAdapter.send`` (so ``responses`` and
urllib3 pools work as usual) with urllib3's own retries off: urllib3 would
resend the same sealed bytes, which the peer's replay cache rightly refuses.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Union, cast
from urllib.parse import urlsplit, urlunsplit

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from .body_buffer import BufferPool
from .deadline import Deadline, read_body
from .envelope import (
    ENVELOPE_HEADERS,
    HEADER_ENCRYPTED,
    HEADER_SEALED_BODY,
    Envelope,
    target_from_url,
)
from .errors import InsecureResponseError, IntegrityError, RequestRejectedError

if TYPE_CHECKING:
    from .call import ServiceCaller

__all__ = [
    "DEFAULT_POOL_MAXSIZE",
    "HEADER_REQUEST_ID",
    "HEADER_SEALED_BODY",
    "REFUSAL_STATUSES",
    "SCHEME",
    "ServiceAdapter",
]

log = logging.getLogger("mscomm_sync.client")

SCHEME = "mscomm://"
HEADER_REQUEST_ID = "X-Request-Id"
#: Unsealed statuses that mean the peer's middleware refused the request.
REFUSAL_STATUSES = frozenset({400, 401, 403, 413})
DEFAULT_POOL_MAXSIZE = 32
#: A sealed request body this large or larger is let go once sent, so
#: ``resp.request.body`` is ``None`` after such a call.
RELEASE_SENT_BODY = 64 * 1024

_STRIP = (*ENVELOPE_HEADERS, HEADER_SEALED_BODY, "Content-Length")
Timeout = Union[None, float, tuple[Optional[float], Optional[float]]]
Cert = Union[None, bytes, str, tuple[Union[bytes, str], Union[bytes, str]]]


class ServiceAdapter(HTTPAdapter):
    """Send sealed calls to services; mount it on ``mscomm://``.

    Args:
        caller: runs the call loop for ``mscomm://`` requests; ``None`` makes
            the adapter usable for :meth:`send_attempt` only.
        pool_connections: how many hosts' pools to keep.
        pool_maxsize: connections kept per host (size it to your threads).
    """

    def __init__(
        self,
        caller: Optional[ServiceCaller] = None,
        *,
        pool_connections: int = 10,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
    ) -> None:
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize)
        self.pool_maxsize = pool_maxsize
        self.caller = caller
        #: Buffers that large sealed answers are read into (ciphertext only).
        self.buffers = BufferPool()

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: Union[bool, str] = True,
        cert: Cert = None,
        proxies: Optional[Mapping[str, str]] = None,
        idempotent: Optional[bool] = None,
    ) -> Response:
        """Run a call to ``mscomm://<service>/<path>``; other URLs pass through.

        Args:
            request: the plaintext request.
            stream: ignored for service calls (a sealed body is read whole).
            timeout: the call's deadline in seconds, or ``(connect, deadline)``.
            verify: TLS verification, as in requests.
            cert: the client certificate, as in requests.
            proxies: ignored for service calls; each instance URL gets the
                environment's proxies (cached per instance).
            idempotent: ``True`` allows retrying any method after a failure
                that may have reached the server; ``False`` forbids it.

        Returns:
            The service's answer, opened.

        Raises:
            MscommError: see :meth:`ServiceCaller.call`.
        """
        url = request.url or ""
        if not url.lower().startswith(SCHEME):
            return super().send(request, stream, cast(Any, timeout), verify, cert, proxies)
        if self.caller is None:
            raise ValueError("this ServiceAdapter has no caller for mscomm:// URLs")
        return self.caller.call(
            self, request, timeout=timeout, idempotent=idempotent, verify=verify, cert=cert
        )

    def send_attempt(
        self,
        request: PreparedRequest,
        *,
        url: Optional[str] = None,
        envelope: Envelope,
        service: str,
        timeout: tuple[float, float],
        verify: Union[bool, str],
        cert: Cert,
        proxies: Optional[Mapping[str, str]],
        allow_plaintext: bool,
        deadline: Optional[Deadline] = None,
    ) -> Response:
        """Seal ``request`` afresh, send it once, and open the answer.

        Args:
            request: the plaintext request; it is not modified.
            url: the instance URL to send it to; defaults to ``request.url``.
            envelope: the calling service's envelope.
            service: the target service (the seal's recipient).
            timeout: ``(connect, read)`` for this attempt.
            verify: TLS verification.
            cert: the client certificate.
            proxies: proxies for this instance.
            allow_plaintext: accept an unsealed answer as is.
            deadline: the call's deadline; reading the body stops when it
                passes (urllib3's read timeout is per socket read only).

        Returns:
            The response, its content the opened plaintext.

        Raises:
            DeadlineExceededError: the deadline passed while reading the body.
            requests.RequestException: the transport failed (untranslated;
                the call loop classifies and translates it).
            RequestRejectedError: the peer's middleware refused the request.
            InsecureResponseError: an unsealed answer was not allowed.
            IntegrityError: a sealed answer failed verification.
        """
        method = (request.method or "GET").upper()
        url = url if url is not None else (request.url or "")
        target = target_from_url(url)
        body = request.body
        if body is None:
            plain = b""
        elif isinstance(body, bytes):
            plain = body
        elif isinstance(body, str):
            plain = body.encode("utf-8")
        else:
            raise TypeError("a sealed call needs a bytes or str body, not a stream or files")
        sealed = envelope.seal_request(
            recipient=service,
            method=method,
            target=target,
            body=plain,
            content_type=request.headers.get("Content-Type"),
        )
        attempt = PreparedRequest()
        attempt.method = method
        attempt.url = url
        outgoing = dict(request.headers)  # later keys win in CaseInsensitiveDict
        outgoing.update(sealed.headers)
        outgoing["Content-Length"] = str(len(sealed.body))
        outgoing["Accept-Encoding"] = "identity"
        attempt.headers = CaseInsensitiveDict(outgoing)
        attempt.headers.pop("Transfer-Encoding", None)
        attempt.body = sealed.body
        attempt.hooks = {"response": []}
        response = super().send(attempt, False, timeout, verify, cert, proxies)
        reply_to = sealed.message_id
        # Sent: a large sealed body is not kept while the answer is read and
        # opened, nor in resp.request for as long as the caller holds the
        # answer (see BufferPool for what holding it cost).
        del sealed
        if len(attempt.body) >= RELEASE_SENT_BODY:
            attempt.body = None
        status = response.status_code
        headers = response.headers
        sealed_reply = (headers.get(HEADER_ENCRYPTED) or "").lower() == "true"
        # Read here, so a reset mid-body fails this attempt. A sealed answer
        # is only opened, so it may be read into a kept buffer.
        data = read_body(
            response,
            deadline=deadline,
            read_timeout=timeout[1],
            into_buffer=sealed_reply,
            buffers=self.buffers,
        )
        if not sealed_reply:
            if allow_plaintext:
                log.debug("plaintext reply accepted (service=%s status=%d)", service, status)
                return response
            request_id = attempt.headers.get(HEADER_REQUEST_ID)
            where = _without_query(url)  # the query may carry data; never logged
            if status in REFUSAL_STATUSES:
                log.warning(
                    "rejected by service=%s status=%d url=%s request_id=%s",
                    service, status, where, request_id,
                )  # fmt: skip
                raise RequestRejectedError(service, status)
            log.warning(
                "unsealed answer from service=%s status=%d url=%s request_id=%s",
                service, status, where, request_id,
            )  # fmt: skip
            raise InsecureResponseError(service=service, status=status)
        if not data and HEADER_SEALED_BODY in headers:
            data = _unb64(headers[HEADER_SEALED_BODY], service)
        try:
            opened = envelope.open_response(
                sender=service,
                method=method,
                target=target,
                status=status,
                reply_to=reply_to,
                headers=headers,
                body=data,
            )
        finally:
            if isinstance(data, memoryview):  # read into a kept buffer: offer it back
                response._content = b""
                self.buffers.give(data)
        for name in _STRIP:
            headers.pop(name, None)
        if opened.content_type is not None:
            headers["Content-Type"] = opened.content_type
        else:
            headers.pop("Content-Type", None)
        if opened.body or method != "HEAD":
            headers["Content-Length"] = str(len(opened.body))
        response._content = opened.body
        response.encoding = get_encoding_from_headers(headers)
        return response

    def close(self) -> None:
        """Close the connection pools and drop the kept read buffers."""
        super().close()
        self.buffers.clear()

    def __repr__(self) -> str:
        return f"<ServiceAdapter pool_maxsize={self.pool_maxsize}>"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _unb64(text: str, service: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise IntegrityError(service=service, reason="malformed sealed body header") from None
