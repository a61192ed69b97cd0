"""Idempotency keys: run a handler at most once per (caller, key).

The wire names are in :mod:`~mscomm_sync.idempotency.wire`, the store
interface in :mod:`~mscomm_sync.idempotency.store`; the middleware's part
is :mod:`mscomm_sync.wsgi.idempotent` and the client's
:mod:`mscomm_sync.client.idempotent`.
"""

from __future__ import annotations

from ..errors import IdempotencyStoreError
from .default import default_idempotency_path, default_idempotency_store
from .memory import MemoryIdempotencyStore
from .redis import RedisIdempotencyStore
from .sqlite import SqliteIdempotencyStore
from .store import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ANSWER_SIZE,
    DEFAULT_RETENTION,
    IDEMPOTENCY_DB_ENV,
    Claim,
    IdempotencyStore,
    Outcome,
    StoredAnswer,
)
from .wire import HEADER_IDEMPOTENCY_KEY, HEADER_IDEMPOTENCY_STATE, valid_key

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ANSWER_SIZE",
    "DEFAULT_RETENTION",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_IDEMPOTENCY_STATE",
    "IDEMPOTENCY_DB_ENV",
    "Claim",
    "IdempotencyStore",
    "IdempotencyStoreError",
    "MemoryIdempotencyStore",
    "Outcome",
    "RedisIdempotencyStore",
    "SqliteIdempotencyStore",
    "StoredAnswer",
    "default_idempotency_path",
    "default_idempotency_store",
    "valid_key",
]
