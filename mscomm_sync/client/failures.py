"""One attempt's transport failure, translated once, where it entered our code.

Failures enter a sealed attempt at two places: ``HTTPAdapter.send`` (as the
exceptions requests raises) and the reading of the answer's body (as socket,
``http.client`` and urllib3 errors). Each is turned into one
:class:`AttemptFailed` there, with the facts the call loop needs as fields,
so nothing later has to dig through ``__cause__`` chains (requests'
``adapters.py`` is the model).
"""

from __future__ import annotations

from typing import Optional

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from ..errors import MscommError

__all__ = ["AttemptFailed"]


class AttemptFailed(MscommError):
    """One attempt failed at the transport level; the call loop decides what follows.

    Attributes:
        connect_phase: the connection was never established, so the request
            certainly never left this host.
        refused: the connection was refused: nothing was listening, so no
            process did any work for the attempt (implies ``connect_phase``).
        not_run: the service certainly did not run the request: it never
            left (``connect_phase``), or the service said so in a sealed
            answer. Such an attempt may be repeated whatever the method.
        retry_after: seconds the service asked to wait before the next
            attempt, or ``None``.
        reason: a short name for the log (``connection refused``,
            ``ConnectTimeout``, ``ReadTimeout``, ``ConnectionResetError``, ...).
        cause: the exception as it entered.
    """

    def __init__(
        self,
        reason: str,
        cause: BaseException,
        *,
        connect_phase: bool,
        refused: bool = False,
        not_run: bool = False,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(f"attempt failed: {reason}")
        self.reason = reason
        self.cause = cause
        self.connect_phase = connect_phase or refused
        self.refused = refused
        self.not_run = not_run or self.connect_phase
        self.retry_after = retry_after

    @classmethod
    def from_requests(cls, exc: requests.RequestException) -> AttemptFailed:
        """Classify what ``HTTPAdapter.send`` raised.

        Only a failure to establish the connection (a connect timeout, a
        refused connection, a failed name lookup) proves the request never
        left; anything after, including a reset on a reused keep-alive
        connection, may have reached the server.
        """
        reason = _urllib3_reason(exc)
        connect_phase = isinstance(exc, requests.ConnectTimeout) or isinstance(
            reason,
            ConnectTimeoutError,  # NewConnectionError and NameResolutionError are ones
        )
        refused = (
            isinstance(reason, NewConnectionError)
            and not isinstance(reason, NameResolutionError)
            and isinstance(reason.__cause__ or reason.__context__, ConnectionRefusedError)
        )
        name = "connection refused" if refused else type(exc).__name__
        return cls(name, exc, connect_phase=connect_phase, refused=refused)

    @classmethod
    def mid_answer(cls, exc: BaseException, reason: Optional[str] = None) -> AttemptFailed:
        """Return the failure of an answer's body that broke off or stalled (after sending).

        urllib3 wraps what broke (a reset, a short body) in ``ProtocolError``;
        the reason names what broke, as when the body is read into a buffer.
        """
        if reason is None:
            inner = exc.args[1] if isinstance(exc, ProtocolError) and len(exc.args) > 1 else exc
            reason = type(inner if isinstance(inner, BaseException) else exc).__name__
        return cls(reason, exc, connect_phase=False)

    @classmethod
    def not_executed(cls, cause: BaseException, retry_after: Optional[float]) -> AttemptFailed:
        """Return the failure the service reported, sealed, for a request it did not run."""
        return cls("not run by the service", cause, connect_phase=False, not_run=True,
                   retry_after=retry_after)  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"<AttemptFailed {self.reason!r} connect_phase={self.connect_phase}"
            f" not_run={self.not_run}>"
        )


def _urllib3_reason(exc: requests.RequestException) -> object:
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return reason
