"""``python -m mscomm_sync.demo``: the walkthrough behind ``make demo``.

It makes a key pair for each service and a trust file (protocol v2: each
instance holds only its own private key), starts four service instances
under gunicorn on 127.0.0.1 (two of billing, one of shipping, one of orders),
registers them in a registry (a JSON file in a temporary directory, or
``MSCOMM_REGISTRY`` if that is set, e.g. to an ``etcd://`` address), and then
shows, step by step, a sealed call, failover, the circuit breaker, replay
protection and a call through a service, with the services' own log lines.
Every process it starts is stopped on the way out, also after Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from types import FrameType
from typing import Any, Optional

import requests

from .. import MscommError
from ..client import MicroServiceClient
from ..client.policies import BreakerPolicy, CallPolicy, RetryPolicy, TimeoutPolicy
from ..keyring import Keyring, variable_name
from ..registry import Registry, initialize_registry, reset_registry
from ..replay import REPLAY_DB_ENV
from .fleet import CALLERS, Fleet
from .output import heading, say
from .processes import ServiceProcess
from .steps import (
    Transition,
    step_breaker,
    step_failover,
    step_replay,
    step_sealed_call,
    step_through_a_service,
    step_why,
)

#: What a user types next: the quickstart's first terminal (docs/quickstart.md,
#: examples/quickstart.sh), word for word; tests/demo checks that they agree.
NEXT_COMMANDS = (
    "python examples/make_keys.py keys",
    "export MSCOMM_TRUST=$PWD/keys/trust.json MSCOMM_REGISTRY=$PWD/registry.json",
    "BILLING_PRIVATE_KEY_FILE=$PWD/keys/billing.key \\\n    gunicorn -c examples/gunicorn.conf.py"
    " -w 2 -b 127.0.0.1:8001 --pythonpath examples flask_service:app",
)

#: The demo's calls: small numbers, so that every effect shows within seconds.
POLICY = CallPolicy(
    retry=RetryPolicy(retries=1, backoff_base=0.05),
    timeout=TimeoutPolicy(deadline=5.0, connect=0.5),
    breaker=BreakerPolicy(failure_threshold=3, recovery_timeout=2.0),
)


def show_registry(registry: Registry) -> None:
    rows = [
        (inst.service, inst.url, "healthy" if inst.healthy else "unhealthy")
        for name in registry.services()
        for inst in registry.get_instances(name)
    ]
    say(f"  {'SERVICE':<10} {'URL':<26} {'HEALTH':<9}")
    for service, url, health in rows:
        say(f"  {service:<10} {url:<26} {health:<9}")


def show_fleet(fleet: Fleet) -> None:
    say("  Each service has a key pair of its own; the trust file lists every public")
    say("  key and who may call whom. Each instance holds only its own private key")
    say(f"  (billing's gets {variable_name('billing', 'PRIVATE_KEY')}, and no other).")
    say(f"  {'SERVICE':<10} {'KEY ID':<18} CALLERS")
    for name, callers in CALLERS.items():
        say(f"  {name:<10} {fleet.keys[name].kid:<18} {', '.join(callers) or '(none)'}")


def run(workdir: str, procs: list[ServiceProcess]) -> None:
    fleet = Fleet(workdir)
    location = os.environ.get("MSCOMM_REGISTRY") or os.path.join(workdir, "registry.json")
    # The instances share one replay store of their own, not the host's
    # default one that other programs on this machine may be using.
    store = os.environ.get(REPLAY_DB_ENV) or os.path.join(workdir, "replay.table")

    def instance(service: str, label: str) -> ServiceProcess:
        env = fleet.environ(os.environ, service, MSCOMM_REGISTRY=location,
                            **{REPLAY_DB_ENV: store})  # fmt: skip
        return ServiceProcess(service, label, env, log_path=os.path.join(workdir, f"{label}.log"))

    heading(1, f"Start 4 instances under gunicorn and register them ({location})")
    show_fleet(fleet)
    billing = [instance("billing", f"billing-{i}") for i in (1, 2)]
    shipping = instance("shipping", "shipping-1")
    orders = instance("orders", "orders-1")
    procs.extend([*billing, shipping, orders])
    for proc in procs:
        proc.start()
    try:
        registry = initialize_registry(location)
        for proc in procs:
            registry.register(proc.service, proc.url, metadata={"instance": proc.instance})
        show_registry(registry)
        say("  The calls below use retries=1 and a breaker threshold of 3 (see steps 3, 4).")
        walk(registry, fleet, billing, shipping)
    finally:
        reset_registry()  # closes it: an etcd lease is revoked, its entries go


def walk(
    registry: Registry, fleet: Fleet, billing: list[ServiceProcess], shipping: ServiceProcess
) -> None:
    transitions: list[Transition] = []

    def listener(breaker: Any, old: str, new: str) -> None:
        transitions.append((breaker.target, old, new))

    def client(name: str, **options: Any) -> MicroServiceClient:
        return MicroServiceClient(
            name, registry=registry, identity=fleet.identity(name), trust=fleet.trust(),
            keyring=Keyring.from_mapping({}), policy=POLICY, **options,
        )  # fmt: skip

    with client("orders", breaker_listener=listener) as orders, client("web") as web:
        wire, took = step_sealed_call(orders)
        step_failover(orders, billing)
        step_breaker(orders, shipping, transitions)
        step_replay(wire, took, billing)
        step_through_a_service(web)
        step_why()


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt


def main() -> int:
    logging.basicConfig(
        stream=sys.stdout, level=logging.WARNING, format="      log %(name)s: %(message)s"
    )
    say("mscomm_sync demo: sealed, resilient calls between real services on 127.0.0.1")
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C ends the demo cleanly even when it was started with SIGINT
    # ignored (a background job of a script or CI runner passes that on).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs: list[ServiceProcess] = []
    started = time.monotonic()
    status = 0
    finished = False
    with tempfile.TemporaryDirectory(prefix="mscomm-demo-") as workdir:
        try:
            run(workdir, procs)
            finished = True
        except KeyboardInterrupt:
            say("\ninterrupted; cleaning up")
        except (MscommError, RuntimeError, requests.RequestException, KeyError) as exc:
            say(f"\ndemo failed: {type(exc).__name__}: {exc}")
            status = 1
        finally:
            # A second Ctrl-C must not cut the clean-up short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for proc in procs:
                proc.stop()
    say()
    say(f"[8] Cleaned up {len(procs)} processes; done in {time.monotonic() - started:.1f}s.")
    if finished:
        say()
        say("Next, a service of your own: from this checkout, after . .venv/bin/activate,")
        say("make keys and start billing (docs/quickstart.md, step 3):")
        for command in NEXT_COMMANDS:
            say("  " + command.replace("\n", "\n  "))
        say("then call it as orders from a second terminal (step 4).")
    return status


if __name__ == "__main__":
    sys.exit(main())
