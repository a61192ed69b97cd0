"""mscomm_sync: sealed, resilient calls between services, in plain blocking code.

Only names listed in ``__all__`` are public, together with the integration
modules ``mscomm_sync.flask``, ``mscomm_sync.django`` and
``mscomm_sync.testing``. Importing this package does no work: no threads, no
files, no network, no logging configuration, and no import of Flask, Django,
Celery, OpenTelemetry or the etcd backend.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .client import MicroServiceClient
from .client.breaker import CircuitBreaker
from .client.policies import BreakerPolicy, BudgetPolicy, CallPolicy, RetryPolicy, TimeoutPolicy
from .envelope import Envelope
from .errors import (
    AnsweredError,
    AnswerLostError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineAfterSendingError,
    DeadlineBeforeSendingError,
    DeadlineExceededError,
    DeadlineSpentOnArrivalError,
    Delivery,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    IdempotencyStoreError,
    IdempotentAnswerLostError,
    InsecureResponseError,
    IntegrityError,
    MaybeDeliveredError,
    MscommError,
    NotDeliveredError,
    RegistryError,
    ReplayGapError,
    RequestRejectedError,
    ResponseTooLargeError,
    ServiceNotFoundError,
    ServiceUnavailableError,
    ServiceUnreachableError,
    UnverifiedAnswerError,
)
from .idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    SqliteIdempotencyStore,
    default_idempotency_store,
)
from .keyring import Keyring, env_var_name, generate_key
from .registry import (
    FileRegistry,
    HealthCheckConfig,
    HealthPoller,
    Instance,
    Registry,
    get_registry,
    initialize_registry,
    register_from_env,
    reset_registry,
)
from .replay import (
    MemoryReplayStore,
    ReplayStore,
    ShmReplayStore,
    SqliteReplayStore,
    default_replay_store,
)
from .telemetry import (
    RequestDeadline,
    Telemetry,
    current_deadline,
    current_request_id,
    initialize_telemetry,
    reset_telemetry,
)
from .trust import Identity, PrivateKey, PublicKey, TrustError, TrustStore, generate_private_key
from .wsgi import EncryptionMiddleware, Idempotency

if _TYPE_CHECKING:
    from .registry.etcd import EtcdRegistry

__version__ = "0.1.0"

__all__ = [
    "AnswerLostError",
    "AnsweredError",
    "BreakerPolicy",
    "BudgetPolicy",
    "CallPolicy",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineAfterSendingError",
    "DeadlineBeforeSendingError",
    "DeadlineExceededError",
    "DeadlineSpentOnArrivalError",
    "Delivery",
    "EncryptionMiddleware",
    "Envelope",
    "EtcdRegistry",
    "FileRegistry",
    "HealthCheckConfig",
    "HealthPoller",
    "Idempotency",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReusedError",
    "IdempotencyStore",
    "IdempotencyStoreError",
    "IdempotentAnswerLostError",
    "Identity",
    "InsecureResponseError",
    "Instance",
    "IntegrityError",
    "Keyring",
    "MaybeDeliveredError",
    "MemoryIdempotencyStore",
    "MemoryReplayStore",
    "MicroServiceClient",
    "MscommError",
    "NotDeliveredError",
    "PrivateKey",
    "PublicKey",
    "RedisIdempotencyStore",
    "Registry",
    "RegistryError",
    "ReplayGapError",
    "ReplayStore",
    "RequestDeadline",
    "RequestRejectedError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServiceNotFoundError",
    "ServiceUnavailableError",
    "ServiceUnreachableError",
    "ShmReplayStore",
    "SqliteIdempotencyStore",
    "SqliteReplayStore",
    "Telemetry",
    "TimeoutPolicy",
    "TrustError",
    "TrustStore",
    "UnverifiedAnswerError",
    "__version__",
    "current_deadline",
    "current_request_id",
    "default_idempotency_store",
    "default_replay_store",
    "env_var_name",
    "generate_key",
    "generate_private_key",
    "get_registry",
    "initialize_registry",
    "initialize_telemetry",
    "register_from_env",
    "reset_registry",
    "reset_telemetry",
]


def __getattr__(name: str) -> _Any:
    # The etcd backend is loaded only when someone asks for it.
    if name == "EtcdRegistry":
        from .registry.etcd import EtcdRegistry

        return EtcdRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
