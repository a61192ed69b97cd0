"""The calling side: a ``requests.Session`` that calls services by name.

* :mod:`.session`: :class:`MicroServiceClient`, the Session subclass;
* :mod:`.payload`: how a service-form payload and query become bytes;
* :mod:`.policies`: the frozen settings (retries, timeouts, breaker, budget);
* :mod:`.adapter`: the adapter mounted on ``mscomm://``, the hub of one call;
* :mod:`.call`: a call's fixed facts, worked out once;
* :mod:`.attempts`: the attempt loop (instance choice, retries, failover);
* :mod:`.transport`: one sealed attempt, and :mod:`.failures`, its
  transport failures translated once;
* :mod:`.answer`: reading an answer within the deadline (:mod:`.deadline`);
* :mod:`.breaker`, :mod:`.budget`, :mod:`.balancer`: per-target state.
"""

from .session import MicroServiceClient

__all__ = ["MicroServiceClient"]
