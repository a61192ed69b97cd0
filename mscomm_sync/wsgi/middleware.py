"""EncryptionMiddleware: the service side of every sealed call, as WSGI middleware.

Trust model: everything in a request is attacker-controlled until the envelope
verified it: the body, ``Content-Length``, and every header, including
``X-Encryption-Service`` (the claimed sender). The app behind this middleware
sees a request only after it was verified, opened, and recorded as delivered
once; ``environ["mscomm.caller"]`` is then the verified sender and the only
identity the app should trust. The envelope headers are removed before the app
runs, so it cannot mistake a claimed sender for a verified one.

Refusals (400, 401, 403, 413) are unsealed, because the middleware could not
establish whom to seal for; each status has one fixed body whatever the reason,
and the reason goes only to the ``mscomm_sync.wsgi`` log. Plaintext requests are
refused unless their path is exempt (or ``require_encryption=False``); those
that pass are held to ``max_body_size`` like sealed ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

from .._fast import memo, tuple_of
from ..envelope import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_WINDOW,
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SERVICE,
    Envelope,
    Opened,
    target_from_environ,
)
from ..envelope.fields import sealable
from ..envelope.headers import bound_method
from ..envelope.limits import sealing_overhead
from ..errors import ConfigurationError, IntegrityError, ReplayGapError
from ..keyring import Keyring
from ..replay import ReplayStore, default_replay_store
from ..telemetry.context import inbound_context
from ..telemetry.instruments import Instruments
from ..telemetry.options import TelemetryOption, resolve
from ..telemetry.process import process_instruments
from ..telemetry.serving import RequestRecord, start_request
from ..trust.identity import Identity
from ..trust.store import TrustStore
from .body import BodyRefused, check_passthrough_body, read_request_body
from .environ import (
    CALLER_KEY,
    DEADLINE_KEY,
    MESSAGE_ID_KEY,
    PROTOCOL_KEY,
    REQUEST_ID_KEY,
    drop_protocol_headers,
    environ_key,
    opened_environ,
)
from .idempotent import Idempotency, answer_once, idempotency_key, resolve_idempotency
from .log import log, log_app_failure, log_refusal, request_id, route
from .options import (
    CALLERS_ENV,
    DEFAULT_EXEMPT_PATHS,
    MiddlewareOptions,
    callers_from_env,
    own_versions,
)
from .response import (
    BODILESS_STATUSES,
    DEADLINE_SPENT,
    NOT_EXECUTED,
    Answer,
    StartResponse,
    WSGIApp,
    app_headers,
    collect,
    error_body,
    refusal,
    sealed_headers,
    status_line,
    without_envelope_headers,
)
from .waitress import served_body

__all__ = ["CALLER_KEY", "MESSAGE_ID_KEY", "EncryptionMiddleware"]


_SEALED_FLAG = environ_key(HEADER_ENCRYPTED)
#: Removed from every request before anything reads it: the verified
#: identity and the call's context (only the middleware sets them, from the
#: seal), and the well-known method-override headers, which travel unbound
#: in v1 and would let anyone on the path turn a sealed GET into the DELETE
#: an override-aware app runs.
_UNBOUND = (
    CALLER_KEY,
    MESSAGE_ID_KEY,
    PROTOCOL_KEY,
    DEADLINE_KEY,
    REQUEST_ID_KEY,
    "HTTP_X_HTTP_METHOD_OVERRIDE",
    "HTTP_X_HTTP_METHOD",
    "HTTP_X_METHOD_OVERRIDE",
)
_SERVICE_KEY = environ_key(HEADER_SERVICE)
_SEAL_KEY = environ_key(HEADER_SEAL)


#: Paths made canonical once each (a service sees few distinct ones); a longer
#: path, which only a client chooses, is made canonical every time instead.
_CACHED_PATHS = 256
_LONGEST_CACHED_PATH = 512


def _path_of(path: str) -> str:
    return target_from_environ({"PATH_INFO": path})


_canonical_path = memo(_CACHED_PATHS)(_path_of)


class EncryptionMiddleware:
    """Verify and open sealed requests; seal the answers.

    Args:
        app: the WSGI application to protect.
        service_name: this service's name; defaults to ``SERVICE_NAME``.
        encrypt_responses: seal answers to sealed requests. ``False`` answers
            them in plaintext, which clients refuse unless told otherwise; it
            is a weakening kept for compatibility.
        require_encryption: refuse (401) plaintext requests to paths that are
            not in ``exempt_paths``.
        exempt_paths: exact paths (``PATH_INFO``) that plaintext requests may
            reach untouched.
        allowed_callers: the verified senders that may reach the app; others
            get 403. When ``None``: the trust file's ``callers`` for this
            service, else ``$MSCOMM_CALLERS``; with none of these, no one.
            Holding a service's key (to open its answers) never makes it a
            caller.
        max_body_size: the largest body, in bytes, of any request: the
            plaintext of a sealed one, or a plaintext one as sent (413 above it).
        replay_window: seconds a request's timestamp may differ from now.
        script_name: the app's mount point, the ``SCRIPT_NAME`` every
            request must have (``""``, the default, for the root); any
            other is refused with 400 before anything else.
        versions: the protocol versions accepted (``("1", "2")``); a version
            this service has no key of its own for is left out.
        outer_headers: protocol v2: the outer (unauthenticated) headers the
            app may see, such as ``X-Forwarded-For`` from the deployment's
            own proxies; every other header the app sees came sealed.
        keyring: v1's shared keys; defaults to the environment.
        identity: v2's private keys of this service; defaults to the environment.
        trust: v2's public keys of the callers; defaults to ``$MSCOMM_TRUST``
            and ``<NAME>_PUBLIC_KEY``.
        replay_store: remembers delivered request ids; defaults to
            :func:`~mscomm_sync.replay.default_replay_store`, shared by every
            process on the host.
        idempotency: honour idempotency keys (sealed, protocol v2): ``True``
            for the defaults and the host-wide store, or an
            :class:`~mscomm_sync.wsgi.Idempotency`; the handler then runs at
            most once per (caller, key). Off by default.
        clock: wall-clock time source, for tests.
        telemetry: what the requests report: a :class:`~mscomm_sync.Telemetry`,
            ``True`` (OpenTelemetry, with the global providers), ``False``
            (nothing), or ``None``: the process's default
            (:func:`~mscomm_sync.initialize_telemetry`, else
            ``$MSCOMM_TELEMETRY`` and ``$MSCOMM_ACCESS_LOG``). The call's
            context (request id, deadline) reaches the app whatever this says.

    Raises:
        ConfigurationError: an option is invalid, no service name is given,
            or this service has no usable key.
    """

    def __init__(
        self,
        app: WSGIApp,
        service_name: Optional[str] = None,
        *,
        encrypt_responses: bool = True,
        require_encryption: bool = True,
        exempt_paths: Iterable[str] = DEFAULT_EXEMPT_PATHS,
        allowed_callers: Optional[Iterable[str]] = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        replay_window: float = DEFAULT_WINDOW,
        script_name: str = "",
        versions: Iterable[str] = ("1", "2"),
        outer_headers: Iterable[str] = (),
        keyring: Optional[Keyring] = None,
        identity: Optional[Identity] = None,
        trust: Optional[TrustStore] = None,
        replay_store: Optional[ReplayStore] = None,
        idempotency: Union[bool, Idempotency, None] = None,
        clock: Callable[[], float] = time.time,
        telemetry: TelemetryOption = None,
    ) -> None:
        self.app = app
        self.options = MiddlewareOptions.build(
            service_name,
            encrypt_responses=encrypt_responses,
            require_encryption=require_encryption,
            exempt_paths=exempt_paths,
            allowed_callers=allowed_callers,
            max_body_size=max_body_size,
            replay_window=replay_window,
            script_name=script_name,
            versions=versions,
            outer_headers=outer_headers,
        )
        name = self.options.service_name
        self.keyring = keyring if keyring is not None else Keyring()
        self.identity = identity if identity is not None else Identity(name)
        # Fail at start-up, not on the first request, when our own keys are unusable.
        speaks = own_versions(name, self.options.versions, self.keyring, self.identity)
        self.replay_store = replay_store if replay_store is not None else default_replay_store()
        self.envelope = Envelope(
            name,
            keyring=self.keyring,
            identity=self.identity,
            trust=trust,
            versions=speaks,
            window=self.options.replay_window,
            replay_store=self.replay_store,
            max_body_size=self.options.max_body_size,
            clock=clock,
        )
        #: The read limit of a v1 and of a v2 sealed body (see _sealed).
        self._read_limits = tuple(
            self.options.max_body_size + sealing_overhead(v) for v in ("1", "2")
        )
        self.idempotency = resolve_idempotency(idempotency)
        self._outer = frozenset(environ_key(h) for h in self.options.outer_headers)
        settings = resolve(telemetry)
        self._telemetry = None if settings is None else Instruments(settings)
        if settings is None:
            process_instruments()  # a bad $MSCOMM_TELEMETRY fails here, not in a request
        self._env_callers = callers_from_env(os.environ)
        if self._callers() == frozenset():
            log.warning(
                "service %s accepts no callers: set allowed_callers, %s or the trust "
                "file's callers for it (every sealed request gets 403 until then)",
                name, CALLERS_ENV,
                extra={"mscomm.event": "no callers", "mscomm.service": name},
            )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"<EncryptionMiddleware service={self.options.service_name!r} "
            f"encrypt_responses={self.options.encrypt_responses}>"
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request (the WSGI entry point)."""
        telemetry = self._telemetry if self._telemetry is not None else process_instruments()
        record = start_request(telemetry, self.options.service_name, _describe)
        if not telemetry.active:
            return self._serve(environ, start_response, record)
        try:
            return self._serve(environ, record.watch(start_response), record)
        finally:
            record.finish(environ)

    def _serve(
        self, environ: dict[str, Any], start_response: StartResponse, record: RequestRecord
    ) -> Iterable[bytes]:
        options = self.options
        if environ.get("SCRIPT_NAME", "") != options.script_name:
            # What the app routes (PATH_INFO) must be what was verified; a
            # mount point moved by the server or a proxy would shift it.
            reason = "SCRIPT_NAME is not this service's mount point"
            return _refuse(400, reason, environ, start_response, record)
        for key in _UNBOUND:
            environ.pop(key, None)
        if _SEALED_FLAG in environ:
            return self._sealed(environ, start_response, record)
        if options.require_encryption and environ.get("PATH_INFO", "") not in options.exempt_paths:
            return _refuse(401, "plaintext request", environ, start_response, record)
        drop_protocol_headers(environ)
        try:
            check_passthrough_body(environ, options.max_body_size)
        except BodyRefused as exc:
            return _refuse(exc.status, exc.reason, environ, start_response, record)
        return self.app(environ, start_response)

    # -- sealed requests -------------------------------------------------

    def _sealed(
        self, environ: dict[str, Any], start_response: StartResponse, record: RequestRecord
    ) -> Iterable[bytes]:
        options = self.options
        arrived = time.monotonic()  # a deadline the caller sent counts from here
        # The most bytes the sealed body may have: the plaintext limit and the
        # overhead of the version its seal header names.
        seal = environ.get(_SEAL_KEY)
        v2 = type(seal) is str and seal.startswith("v=2;")
        try:
            body = read_request_body(environ, self._read_limits[1] if v2 else self._read_limits[0])
        except BodyRefused as exc:
            return _refuse(exc.status, exc.reason, environ, start_response, record)
        # An unusable method is the envelope's to refuse; it is bound as it came.
        sent = environ.get("REQUEST_METHOD", "GET")
        method = bound_method(sent) or str(sent)
        target = self._target(environ)
        # The envelope headers, by the names the envelope reads.
        headers = {HEADER_ENCRYPTED: environ[_SEALED_FLAG]}
        service = environ.get(_SERVICE_KEY)
        if service is not None:
            headers[HEADER_SERVICE] = service
        if seal is not None:
            headers[HEADER_SEAL] = seal
        try:
            opened = self.envelope.open_request(
                method=method, target=target, headers=headers, body=body
            )
        except ReplayGapError as exc:
            # Authentic, but the replay store cannot vouch for it: not run,
            # and its sender is told so, sealed, to seal it again.
            reason = "sealed before the replay store began; the caller is asked to seal it again"
            log_refusal(503, reason, environ, sender=exc.service, message_id=exc.message_id)
            record.refused(503, reason)
            return self._send_sealed(
                environ, start_response, NOT_EXECUTED, exc.request, method, target
            )
        except IntegrityError as exc:
            # Too large is a size refusal, whichever check found it (a v2 body's
            # sealed fields let its length pass the read limit and fail on opening).
            status = 413 if exc.reason == "body too large" else 401
            reason = f"verification failed: {exc.reason}"
            return _refuse(status, reason, environ, start_response, record)
        # The ciphertext is not needed any more: let it go before the app runs,
        # so a large request is not held twice while it is being answered.
        del body
        if opened.sender not in self._callers():
            return _refuse(
                403, "caller not allowed", environ, start_response, record,
                sender=opened.sender, message_id=opened.message_id,
            )  # fmt: skip
        inner = opened_environ(environ, opened, self._outer)
        # The envelope binds the method upper-cased: hand the app the form it verified.
        inner["REQUEST_METHOD"] = method
        # The call's context, from the sealed headers only (v2; v1 seals none).
        context = inbound_context(opened.headers, arrived) if opened.headers else None
        record.verified(inner, context)
        if context is not None:
            if context.request_id is not None:
                inner[REQUEST_ID_KEY] = context.request_id
            if context.deadline is not None:
                inner[DEADLINE_KEY] = context.deadline
                if context.deadline.expired():
                    reason = "the caller's deadline was spent on arrival; not run"
                    log_refusal(504, reason, environ, sender=opened.sender,
                                message_id=opened.message_id)  # fmt: skip
                    record.refused(504, reason)
                    return self._send_sealed(
                        inner, start_response, DEADLINE_SPENT, opened, method, target
                    )
        with record.serving(context):
            if not options.encrypt_responses:
                return self._plaintext_answer(inner, start_response)
            return self._sealed_answer(inner, start_response, opened, method, target)

    def _callers(self) -> frozenset[str]:
        """Who may call this service: the option, else the trust file, else the environment."""
        allowed = self.options.allowed_callers
        if allowed is not None:
            return allowed
        from_trust = self.envelope.trust.callers(self.options.service_name)
        return from_trust if from_trust is not None else self._env_callers

    @staticmethod
    def _target(environ: dict[str, Any]) -> str:
        """Return the request's canonical target, as :func:`target_from_environ` does.

        The canonical path is cached per ``PATH_INFO`` (``SCRIPT_NAME`` is
        already checked); the query is bound as sent, so it is appended
        unchanged.
        """
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        if not (type(path) is str and type(query) is str):
            return target_from_environ(environ)
        canon = _canonical_path(path) if len(path) <= _LONGEST_CACHED_PATH else _path_of(path)
        return f"{canon}?{query}" if query else canon

    def _plaintext_answer(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        def filtered(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            return start_response(status, without_envelope_headers(headers), exc_info)

        return self.app(environ, filtered)

    def _sealed_answer(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        opened: Opened,
        method: str,
        target: str,
    ) -> Iterable[bytes]:
        key = idempotency_key(opened.headers) if self.idempotency is not None else None
        if key is None:
            answer, _crashed = self._run_app(environ, opened)
        else:
            assert self.idempotency is not None
            answer = answer_once(
                self.idempotency,
                service=self.options.service_name,
                caller=opened.sender,
                key=key,
                method=method,
                target=target,
                body=opened.body,
                run=lambda: self._run_app(environ, opened),
            )
        return self._send_sealed(environ, start_response, answer, opened, method, target)

    def _run_app(self, environ: dict[str, Any], opened: Opened) -> tuple[Answer, bool]:
        """Run the app; return its whole answer and whether it crashed (then a 500)."""
        try:
            status, code, headers, body = collect(self.app, environ)
            kept, content_type = app_headers(headers)
        except Exception:
            log_app_failure("app failed", environ, opened.sender, opened.message_id)
            answer = Answer(status_line(500), 500, [], error_body(500), "application/json")
            return answer, True
        return tuple_of(Answer, (status, code, kept, body, content_type)), False

    def _send_sealed(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        answer: Answer,
        request: Opened,
        method: str,
        target: str,
    ) -> Iterable[bytes]:
        """Seal ``answer`` for the request it answers and hand it to the server.

        In v2 the app's headers travel inside the seal; in v1 beside it.
        """
        code = answer.code
        bodiless = method == "HEAD" or code < 200 or code in BODILESS_STATUSES
        v2 = request.version == "2"
        try:
            sealed = self.envelope.seal_response(
                recipient=request.sender,
                method=method,
                target=target,
                status=code,
                reply_to=request.message_id,
                body=b"" if bodiless else answer.body,
                content_type=answer.content_type,
                headers=sealable(answer.headers) if v2 else None,
                request=request,
            )
        except ConfigurationError:
            # Our own key became unusable (e.g. a bad rotation); the caller
            # will refuse this unsealed answer, which is the truth.
            log_app_failure("cannot seal the answer", environ, request.sender, request.message_id)
            line, refusal_headers, refusal_body = refusal(500)
            start_response(line, refusal_headers)
            return refusal_body
        # A copy: sealed_headers extends the list, and NOT_EXECUTED is shared.
        kept = [] if v2 else list(answer.headers)
        out_headers, out_body = sealed_headers(kept, sealed, code, bodiless=bodiless)
        start_response(answer.status, out_headers)
        return served_body(environ, out_body)


def _refuse(
    status: int,
    reason: str,
    environ: dict[str, Any],
    start_response: StartResponse,
    record: RequestRecord,
    *,
    sender: Optional[str] = None,
    message_id: Optional[str] = None,
) -> Iterable[bytes]:
    """Log and count a refusal, and send its fixed unsealed answer."""
    log_refusal(status, reason, environ, sender=sender, message_id=message_id)
    record.refused(status, reason)
    line, headers, body = refusal(status)
    start_response(line, headers)
    return body


def _describe(environ: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    """A request's route and request id, as the refusal log writes them (for access lines)."""
    return route(environ), request_id(environ)
