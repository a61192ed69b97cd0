"""``python -m mscomm_sync.demo``: the walkthrough behind ``make demo``.

It starts four service instances under gunicorn on 127.0.0.1 (two of billing,
one of shipping, one of orders), registers them in a registry (a JSON file in
a temporary directory, or ``MSCOMM_REGISTRY`` if that is set, e.g. to an
``etcd://`` address), and then shows, step by step, a sealed call, failover,
the circuit breaker and replay protection. Every process it starts is
stopped on the way out, also after Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Optional

import requests

from .. import CircuitOpenError, MscommError, ServiceUnavailableError, generate_key
from ..client import MicroServiceClient
from ..client.policies import BreakerPolicy, CallPolicy, RetryPolicy, TimeoutPolicy
from ..keyring import env_var_name
from ..registry import Registry, initialize_registry, reset_registry
from ..replay import REPLAY_DB_ENV
from .processes import ServiceProcess

SERVICES = ("orders", "billing", "shipping")
WIDTH = 76

#: A breaker transition as the client's listener saw it: (service, old, new).
Transition = tuple[str, str, str]


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(number: int, title: str) -> None:
    say()
    say(f"[{number}] {title}")
    say("-" * WIDTH)


def short(data: Any, limit: int = 60) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """Hold back a logger's records below ERROR for the duration of the block."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def show_transitions(transitions: list[Transition], shown: int) -> int:
    """Print the transitions after the first ``shown``; return how many there are now."""
    for service, old, new in transitions[shown:]:
        say(f"          breaker {service}: {old} -> {new}")
    return len(transitions)


def show_registry(registry: Registry) -> None:
    rows = [
        (inst.service, inst.url, "healthy" if inst.healthy else "unhealthy")
        for name in registry.services()
        for inst in registry.get_instances(name)
    ]
    say(f"  {'SERVICE':<10} {'URL':<26} {'HEALTH':<9}")
    for service, url, health in rows:
        say(f"  {service:<10} {url:<26} {health:<9}")


def step_sealed_call(client: MicroServiceClient) -> requests.PreparedRequest:
    heading(2, "A sealed call: orders -> billing POST /api/v1/charge")
    resp = client.request(
        target_service="billing", endpoint="/api/v1/charge", method="POST",
        payload={"order": 1001, "amount": 42}, timeout=5,
    )  # fmt: skip
    wire = resp.request
    sealed = wire.body if isinstance(wire.body, bytes) else b""
    seen = resp.json()
    say(f"  {'on the wire':<34} | {'what the billing handler saw':<37}")
    say(f"  {'-' * 34} | {'-' * 37}")
    left = [
        f"X-Encryption-Service: {wire.headers.get('X-Encryption-Service')}",
        f"X-Mscomm-Seal: {wire.headers.get('X-Mscomm-Seal')}",
        f"Content-Type: {short(wire.headers.get('Content-Type'), 20)}",
        f"body ({len(sealed)} bytes):",
        f"  {sealed[:14].hex()}...",
    ]
    right = [
        f"caller: {seen.get('caller')}",
        f"instance: {seen.get('instance')}",
        "Content-Type: application/json",
        f"body ({len(seen.get('handler_saw', ''))} bytes):",
        f"  {short(seen.get('handler_saw'), 35)}",
    ]
    for a, b in zip(left, right):
        say(f"  {short(a, 34):<34} | {b}")
    say(f"  -> {resp.status_code}, charged {seen.get('charged')} (reply sealed by billing, opened)")
    return wire


def step_failover(client: MicroServiceClient, billing: list[ServiceProcess]) -> None:
    heading(3, f"Failover: kill {billing[0].instance} (SIGKILL), keep calling billing")
    billing[0].kill()
    answered: dict[str, int] = {}
    for i in range(6):
        resp = client.request(
            target_service="billing", endpoint="/api/v1/charge", method="POST",
            payload={"order": 2000 + i, "amount": i}, timeout=5,
        )  # fmt: skip
        who = resp.json()["instance"]
        answered[who] = answered.get(who, 0) + 1
    say(f"  6 calls, 6 answers, 0 errors; answered by: {answered}")


def step_breaker(
    client: MicroServiceClient, shipping: ServiceProcess, transitions: list[Transition]
) -> None:
    heading(4, "Circuit breaker: take shipping down, then bring it back")
    shipping.stop()
    say("  shipping stopped")
    shown = len(transitions)
    # The breaker logs its transitions while the call is still running; the
    # listener's record is shown instead, after the line of the call it ended.
    with quiet("mscomm_sync.client"):
        for i in range(5):
            start = time.monotonic()
            try:
                client.request(target_service="shipping", endpoint="/api/v1/quote", timeout=3)
                outcome = "answered?!"
            except CircuitOpenError as exc:
                outcome = f"CircuitOpenError (fast, no network; probe in {exc.retry_after:.1f}s)"
            except ServiceUnavailableError as exc:
                outcome = f"ServiceUnavailableError after {exc.attempts} attempt(s)"
            took = (time.monotonic() - start) * 1000
            say(f"  call {i + 1}: {outcome:<58} {took:6.1f} ms")
            shown = show_transitions(transitions, shown)
        shipping.start()
        say("  shipping restarted")
        breaker = client.breaker("shipping")
        time.sleep(min(max(breaker.open_remaining, 0.0) + 0.05, 5.0))
        resp = client.request(target_service="shipping", endpoint="/api/v1/quote", timeout=5)
        say(f"  call 6: probe allowed -> {resp.status_code} {resp.json()} ")
        show_transitions(transitions, shown)
    states = [old for _, old, _ in transitions[:1]] + [new for _, _, new in transitions]
    say(f"  breaker transitions: {' -> '.join(states) or '(none)'}")


def step_replay(wire: requests.PreparedRequest, billing: list[ServiceProcess]) -> None:
    heading(5, "Replay: send the request captured in step 2 again, byte for byte")
    headers = {k: v for k, v in wire.headers.items() if k.lower() != "connection"}
    url = wire.url or ""
    for proc in billing:
        if proc.running:
            path = url.split(str(proc.port), 1)[-1] if str(proc.port) in url else None
            if path is None:
                url = proc.url + "/api/v1/charge"
            break
    resp = requests.post(url, data=wire.body, headers=headers, timeout=5)
    say(f"  replayed to {url} -> {resp.status_code} {resp.text.strip()}")
    say("  (the instances of a host share one replay store, so a replay to the other")
    say("   instance is refused too; billing's log says why, the caller only sees 401)")


def run(workdir: str, procs: list[ServiceProcess]) -> None:
    env = dict(os.environ)
    for name in SERVICES:
        env.setdefault(env_var_name(name), generate_key())
    os.environ.update({env_var_name(n): env[env_var_name(n)] for n in SERVICES})
    location = env.get("MSCOMM_REGISTRY") or os.path.join(workdir, "registry.json")
    env["MSCOMM_REGISTRY"] = location
    # The instances share one replay store of their own, not the host's
    # default one that other programs on this machine may be using.
    env.setdefault(REPLAY_DB_ENV, os.path.join(workdir, "replay.table"))

    heading(1, f"Start 4 instances under gunicorn and register them ({location})")
    billing = [ServiceProcess("billing", f"billing-{i}", env) for i in (1, 2)]
    shipping = ServiceProcess("shipping", "shipping-1", env)
    orders = ServiceProcess("orders", "orders-1", env)
    procs.extend([*billing, shipping, orders])
    for proc in procs:
        proc.start()
    try:
        registry = initialize_registry(location)
        for proc in procs:
            registry.register(proc.service, proc.url, metadata={"instance": proc.instance})
        show_registry(registry)
        walk(registry, billing, shipping)
    finally:
        reset_registry()  # closes it: an etcd lease is revoked, its entries go


def walk(registry: Registry, billing: list[ServiceProcess], shipping: ServiceProcess) -> None:
    transitions: list[Transition] = []

    def listener(breaker: Any, old: str, new: str) -> None:
        transitions.append((breaker.target, old, new))

    fast = CallPolicy(
        retry=RetryPolicy(retries=1, backoff_base=0.05),
        timeout=TimeoutPolicy(deadline=5.0, connect=0.5),
        breaker=BreakerPolicy(failure_threshold=3, recovery_timeout=2.0),
    )
    client = MicroServiceClient("orders", registry=registry, policy=fast, breaker_listener=listener)
    with client:
        wire = step_sealed_call(client)
        step_failover(client, billing)
        step_breaker(client, shipping, transitions)
        step_replay(wire, billing)
        heading(6, "A call through a service: client -> orders -> billing + shipping")
        resp = client.request(
            target_service="orders", endpoint="/api/v1/checkout", method="POST",
            payload={"order": 3000, "amount": 7}, timeout=10,
        )  # fmt: skip
        body = resp.json()
        say(f"  -> {resp.status_code}: billed by {body['billing']['instance']}, "
            f"{body['shipping']['days']} days by {body['shipping']['instance']}")  # fmt: skip


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
    with tempfile.TemporaryDirectory(prefix="mscomm-demo-") as workdir:
        try:
            run(workdir, procs)
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
    say(f"[7] Cleaned up {len(procs)} processes; done in {time.monotonic() - started:.1f}s.")
    return status


if __name__ == "__main__":
    sys.exit(main())
