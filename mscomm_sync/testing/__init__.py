"""Testing support shipped with mscomm_sync: live servers, fixtures, sealed mocks, a fault proxy.

The pytest fixtures live in :mod:`mscomm_sync.testing.plugin`, which pytest
loads by itself once the package is installed (see ``docs/testing.md``). The
classes behind them are importable from here for use outside pytest.
:class:`LiveServer` and :class:`SealedService` need werkzeug (the ``flask``
extra) and :class:`ServiceMock` needs ``responses``, at the point of use;
:class:`FaultProxy` (with :class:`Fault`) needs nothing more. Importing
``mscomm_sync`` itself never imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .server import LiveServer

if TYPE_CHECKING:
    from .keys import KeyFactory
    from .mock import ServiceMock
    from .mock_types import MockCall, MockReply, MockRequest
    from .proxy import Fault, FaultProxy, ProxyError, ProxyStats
    from .service import SealedService

__all__ = [
    "Fault",
    "FaultProxy",
    "KeyFactory",
    "LiveServer",
    "MockCall",
    "MockReply",
    "MockRequest",
    "ProxyError",
    "ProxyStats",
    "SealedService",
    "ServiceMock",
]

_LAZY = {
    "KeyFactory": "keys",
    "ServiceMock": "mock",
    "MockCall": "mock_types",
    "MockReply": "mock_types",
    "MockRequest": "mock_types",
    "Fault": "proxy",
    "FaultProxy": "proxy",
    "ProxyError": "proxy",
    "ProxyStats": "proxy",
    "SealedService": "service",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that loading the pytest plugin stays cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
