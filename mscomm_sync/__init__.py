"""mscomm_sync: sealed, resilient calls between services, in plain blocking code.

Only names listed in ``__all__`` are public. Importing this package does no
work: no threads, no files, no network, no logging configuration.
"""

from .envelope import Envelope
from .errors import (
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
    InsecureResponseError,
    IntegrityError,
    MscommError,
    RegistryError,
    RequestRejectedError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from .keyring import Keyring, env_var_name, generate_key
from .replay import MemoryReplayStore, ReplayStore

__version__ = "0.1.0"

__all__ = [
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineExceededError",
    "Envelope",
    "InsecureResponseError",
    "IntegrityError",
    "Keyring",
    "MemoryReplayStore",
    "MscommError",
    "RegistryError",
    "ReplayStore",
    "RequestRejectedError",
    "ServiceNotFoundError",
    "ServiceUnavailableError",
    "__version__",
    "env_var_name",
    "generate_key",
]
