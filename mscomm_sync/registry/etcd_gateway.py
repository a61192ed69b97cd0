"""A small client for etcd v3's JSON gateway (``/v3/...``), with failover.

It speaks plain HTTP through ``requests``, so there is no gRPC or protobuf
dependency. Keys and values travel base64-encoded; 64-bit integers come back
as strings. Each call tries the member that answered last, then the others in
order; a member that refuses the connection, times out or answers 5xx (no
leader, request timed out) is skipped.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

import attrs
import requests

from ..errors import ConfigurationError, RegistryError

__all__ = ["EtcdGateway", "KeyValue", "prefix_range_end"]

log = logging.getLogger("mscomm_sync.registry")

#: The etcd error code (gRPC NOT_FOUND) for an unknown or expired lease.
_NOT_FOUND = 5


@attrs.frozen
class KeyValue:
    """One key read from etcd."""

    key: str
    value: bytes
    mod_revision: int
    lease: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_range_end(prefix: bytes) -> bytes:
    """Return the ``range_end`` that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


class EtcdGateway:
    """Call etcd members' JSON gateways, failing over between them.

    Args:
        endpoints: member base URLs, e.g. ``["http://127.0.0.1:2379"]``.
        timeout: read timeout of one request, in seconds.
        connect_timeout: connect timeout of one request, in seconds.
        session_factory: makes the ``requests.Session`` (one per process).

    Raises:
        ConfigurationError: no endpoint was given.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 2.0,
        connect_timeout: float = 1.0,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        if not endpoints:
            raise ConfigurationError("at least one etcd endpoint is needed", reason="no endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._session_factory = session_factory
        self._session: Optional[requests.Session] = None
        self._pid = os.getpid()
        self._preferred = 0

    @property
    def location(self) -> str:
        """The endpoints, comma-separated (for messages)."""
        return ",".join(self.endpoints)

    @property
    def current(self) -> str:
        """The endpoint tried first, i.e. the one that answered last."""
        return self.endpoints[self._preferred]

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first member that answers.

        Args:
            path: e.g. ``/v3/kv/range``.
            body: the JSON request.

        Returns:
            The decoded JSON answer.

        Raises:
            RegistryError: every member failed (``reason`` is ``"unreachable"``),
                or etcd refused the request (``reason`` is its error message).
        """
        session = self._get_session()
        count = len(self.endpoints)
        start = self._preferred
        failures: list[str] = []
        for offset in range(count):
            index = (start + offset) % count
            endpoint = self.endpoints[index]
            try:
                answer = session.post(
                    endpoint + path, json=body, timeout=(self.connect_timeout, self.timeout)
                )
            except requests.RequestException as exc:
                failures.append(f"{endpoint}: {type(exc).__name__}")
                continue
            if answer.status_code >= 500:
                failures.append(f"{endpoint}: HTTP {answer.status_code}")
                continue
            if index != self._preferred:
                log.info(
                    "etcd: now using %s", endpoint,
                    extra={"mscomm.event": "etcd endpoint", "mscomm.location": endpoint},
                )  # fmt: skip
                self._preferred = index
            return self._decode(answer, path)
        raise RegistryError(
            f"no etcd member answered {path} ({'; '.join(failures)})",
            location=self.location,
            reason="unreachable",
        )

    def _decode(self, answer: requests.Response, path: str) -> dict[str, Any]:
        try:
            data = answer.json()
        except ValueError as exc:
            raise RegistryError(
                f"etcd answered {path} with non-JSON (HTTP {answer.status_code})",
                location=self.location,
                reason="bad answer",
            ) from exc
        if not isinstance(data, dict):
            raise RegistryError(
                f"etcd answered {path} with unexpected JSON",
                location=self.location,
                reason="bad answer",
            )
        if answer.status_code >= 400 or "error" in data:
            message = str(data.get("message") or data.get("error") or answer.status_code)
            code = data.get("code")
            reason = "not found" if code == _NOT_FOUND else message
            raise RegistryError(
                f"etcd refused {path}: {message}", location=self.location, reason=reason
            )
        return data

    # -- key-value -------------------------------------------------------

    def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        """Store ``value`` under ``key``, attached to ``lease`` (0: none)."""
        body: dict[str, Any] = {"key": _b64(key.encode()), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        self.call("/v3/kv/put", body)

    def delete(self, key: str) -> int:
        """Delete ``key`` (absent keys are fine) and return how many keys went (0 or 1)."""
        data = self.call("/v3/kv/deleterange", {"key": _b64(key.encode())})
        return int(data.get("deleted", 0))  # int64 travels as a string; 0 is omitted

    def range_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Return every key starting with ``prefix`` (sorted by key) and the store revision."""
        data = self.call("/v3/kv/range", self._prefix_body(prefix))
        return [self._kv(item) for item in data.get("kvs", ())], self._revision(data)

    def revision(self) -> int:
        """Return the store's current revision: it moves on every change anywhere in etcd.

        One ``count_only`` read of a single key: cheap however many keys exist.
        """
        data = self.call("/v3/kv/range", {"key": _b64(b"\0"), "count_only": True})
        return self._revision(data)

    @staticmethod
    def _revision(data: dict[str, Any]) -> int:
        header = data.get("header")
        return int(header.get("revision", 0)) if isinstance(header, dict) else 0

    @staticmethod
    def _prefix_body(prefix: str) -> dict[str, Any]:
        raw = prefix.encode()
        return {"key": _b64(raw), "range_end": _b64(prefix_range_end(raw))}

    @staticmethod
    def _kv(item: dict[str, Any]) -> KeyValue:
        return KeyValue(
            key=base64.b64decode(item.get("key", "")).decode("utf-8", "replace"),
            value=base64.b64decode(item.get("value", "")),
            mod_revision=int(item.get("mod_revision", 0)),
            lease=int(item.get("lease", 0)),
        )

    # -- leases ----------------------------------------------------------

    def grant(self, ttl: int) -> int:
        """Grant a lease of ``ttl`` seconds and return its id."""
        data = self.call("/v3/lease/grant", {"TTL": str(ttl), "ID": "0"})
        return int(data["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``; return its new TTL, 0 if it has expired."""
        data = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        result = data.get("result", {})
        return int(result.get("TTL", 0)) if isinstance(result, dict) else 0

    def revoke(self, lease: int) -> None:
        """Revoke ``lease``, deleting its keys; an unknown lease is fine."""
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)})
        except RegistryError as exc:
            if exc.reason != "not found":
                raise

    # -- lifecycle -------------------------------------------------------

    def _get_session(self) -> requests.Session:
        if self._pid != os.getpid():
            # Forked: the parent's pooled sockets must not be shared.
            self._pid = os.getpid()
            self._session = None
        if self._session is None:
            self._session = self._session_factory()
        return self._session

    def close(self) -> None:
        """Close pooled connections."""
        session, self._session = self._session, None
        if session is not None and self._pid == os.getpid():
            session.close()

    def __repr__(self) -> str:
        return f"<EtcdGateway endpoints={self.location!r} current={self.current!r}>"
