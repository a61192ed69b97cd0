"""Testing support shipped with mscomm_sync: live servers, fixtures, sealed mocks.

Needs the ``flask`` extra (for werkzeug) at the point of use; importing
``mscomm_sync`` itself never imports this package.
"""

from .server import LiveServer

__all__ = ["LiveServer"]
