"""The service side of every sealed call: WSGI middleware for Flask, Django and any app.

The hub is :class:`EncryptionMiddleware` (:mod:`.middleware`); its ``__call__``
sends one request out to each spoke in turn and each returns to it:

* :mod:`.options`: the frozen, validated settings;
* :mod:`.body`: reading a request body within its size limit, with
  :mod:`.gunicorn`, the one-copy read from gunicorn's socket;
* :mod:`.response`: collecting the app's answer and shaping refusals and
  sealed answers, with :mod:`.waitress`, handing large bodies to waitress
  uncopied;
* :mod:`.idempotent`: running the app at most once per idempotency key;
* :mod:`.log`: what a refusal or an app failure logs.
"""

from .environ import CALLER_KEY, MESSAGE_ID_KEY, PROTOCOL_KEY
from .idempotent import Idempotency
from .middleware import EncryptionMiddleware

__all__ = ["CALLER_KEY", "MESSAGE_ID_KEY", "PROTOCOL_KEY", "EncryptionMiddleware", "Idempotency"]
