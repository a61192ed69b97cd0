"""RedisIdempotencyStore: keys shared by every host of a service, in Redis.

The default store is per host; a service whose instances run on several hosts
needs one store they all share, or a repeat that fails over to another host
runs again. Each operation is one Lua script, so it is atomic in Redis. Redis
itself expires what it holds: a running claim when its lease ends, an answer
when its retention does. Across hosts the store cannot tell that a claimant
died, so its claim is given up when its lease ends.

Bounds are Redis's: set ``maxmemory`` with a ``volatile-*`` eviction policy
(every key here has an expiry) or ``noeviction`` (then a full Redis refuses,
and the middleware runs nothing).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ConfigurationError, IdempotencyStoreError
from .store import Claim, Outcome, StoredAnswer, log

if TYPE_CHECKING:
    import redis as _redis

__all__ = ["RedisIdempotencyStore"]

# KEYS[1] the scope's key; ARGV: fingerprint, token, lease (ms).
_CLAIM = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'owner', 'answer')
if held[1] then
  if held[1] ~= ARGV[1] then return {'reused'} end
  if held[2] and held[2] ~= '' then return {'running', redis.call('PTTL', KEYS[1])} end
  return {'done', held[3]}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'started'}
"""
# ARGV: token, retention (ms), the answer ('' when not kept).
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'answer', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# ARGV: token.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisIdempotencyStore:
    """An idempotency store in Redis, shared by every host that can reach it.

    Args:
        client: a ``redis.Redis`` client (redis-py; ``pip install redis``),
            made with its default ``decode_responses=False``.
        prefix: what every key of this store starts with.

    Raises:
        ConfigurationError: the prefix is empty.
    """

    def __init__(self, client: _redis.Redis, *, prefix: str = "mscomm:idempotency") -> None:
        if not prefix:
            raise ConfigurationError(
                "the Redis key prefix is empty", variable="prefix", reason="empty"
            )
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "mscomm:idempotency") -> RedisIdempotencyStore:
        """Return a store on the Redis at ``url`` (``redis://host:port/db``)."""
        import redis  # only when asked for: redis-py is an optional dependency

        return cls(redis.Redis.from_url(url), prefix=prefix)

    def claim(self, scope: str, fingerprint: str, *, lease: float) -> Claim:
        token = os.urandom(8).hex()
        found = self._run(self._claim, scope, fingerprint, token, _ms(lease))
        state = _text(found[0])
        if state == "started":
            return Claim(Outcome.STARTED, token=token)
        if state == "reused":
            return Claim(Outcome.REUSED)
        if state == "running":
            left = max(int(found[1]), 0) / 1000.0
            return Claim(Outcome.RUNNING, retry_after=min(1.0, left) or 1.0)
        answer = found[1] if len(found) > 1 else None
        if not answer:
            return Claim(Outcome.DONE)
        try:
            return Claim(Outcome.DONE, answer=StoredAnswer.decode(answer))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._failed(exc) from exc

    def complete(
        self, scope: str, token: str, answer: Optional[StoredAnswer], *, retention: float
    ) -> None:
        data = b"" if answer is None else answer.encode()
        self._run(self._complete, scope, token, _ms(retention), data)

    def release(self, scope: str, token: str) -> None:
        self._run(self._release, scope, token)

    def _run(self, script: Any, scope: str, *args: Any) -> Any:
        import redis

        try:
            return script(keys=[f"{self.prefix}:{scope}"], args=list(args))
        except redis.RedisError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> IdempotencyStoreError:
        reason = type(exc).__name__
        log.error(
            "idempotency store %r failed: %s", self, reason,
            extra={"mscomm.store": repr(self), "mscomm.reason": reason},
        )  # fmt: skip
        return IdempotencyStoreError(
            f"idempotency store {self!r} failed ({reason})", store=repr(self), reason=reason
        )

    def __repr__(self) -> str:
        pool = getattr(self.client, "connection_pool", None)
        where = pool.connection_kwargs if pool is not None else {}
        host = where.get("host", where.get("path", "?"))
        return f"<RedisIdempotencyStore {host}:{where.get('port', '')} prefix={self.prefix!r}>"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)
