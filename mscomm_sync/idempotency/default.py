"""The idempotency store used when a service enables keys without naming a store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from .sqlite import SqliteIdempotencyStore
from .store import IDEMPOTENCY_DB_ENV

__all__ = ["default_idempotency_path", "default_idempotency_store"]


def default_idempotency_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Return the file of the host-wide default idempotency store.

    ``$MSCOMM_IDEMPOTENCY_DB`` when set; otherwise
    ``$XDG_STATE_HOME/mscomm/idempotency.sqlite3`` (``XDG_STATE_HOME``
    defaults to ``~/.local/state``): on disk, not tmpfs, so that kept answers
    outlive a reboot, and per user.
    """
    env = os.environ if environ is None else environ
    configured = env.get(IDEMPOTENCY_DB_ENV, "").strip()
    if configured:
        return Path(configured)
    state = env.get("XDG_STATE_HOME", "").strip() or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state, "mscomm", "idempotency.sqlite3")


def default_idempotency_store() -> SqliteIdempotencyStore:
    """Return a :class:`SqliteIdempotencyStore` at :func:`default_idempotency_path`.

    Its directory is created (mode 0700) if missing; the database itself
    is created on first use.
    """
    path = default_idempotency_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SqliteIdempotencyStore(path)
