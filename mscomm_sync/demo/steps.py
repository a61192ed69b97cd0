"""The walkthrough's steps 2 to 7: each one calls real services and prints what happened."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests

from .. import CircuitOpenError, ServiceUnavailableError
from ..client import MicroServiceClient
from .output import captured, heading, quiet, say, short, show_log_line
from .processes import ServiceProcess

__all__ = [
    "FAILOVER_CALLS",
    "Transition",
    "step_breaker",
    "step_failover",
    "step_replay",
    "step_sealed_call",
    "step_through_a_service",
    "step_why",
    "wire_body",
]

#: Calls made in step 3 once a failover was seen (and at most this many more
#: until one is: each call picks its first instance at random, and an
#: instance that refused a connection is then avoided for a few seconds).
FAILOVER_CALLS = 6
_MAX_FAILOVER_CALLS = 30

#: A breaker transition as the client's listener saw it: (service, old, new).
Transition = tuple[str, str, str]


def wire_body(wire: requests.PreparedRequest) -> bytes:
    """The sealed body as it was sent (a v2 body goes out as a list of chunks)."""
    body: object = wire.body
    if isinstance(body, (list, tuple)):
        return b"".join(bytes(chunk) for chunk in body)
    return bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else b""


def step_sealed_call(client: MicroServiceClient) -> tuple[requests.PreparedRequest, str]:
    """Step 2; return the request as it went on the wire, and the instance that took it."""
    heading(2, "A sealed call: orders -> billing POST /api/v1/charge")
    resp = client.request(
        target_service="billing", endpoint="/api/v1/charge", method="POST",
        payload={"order": 1001, "amount": 42}, timeout=5,
    )  # fmt: skip
    wire = resp.request
    sealed = wire_body(wire)
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
        f"caller: {seen.get('caller')} (verified)",
        f"instance: {seen.get('instance')}",
        "Content-Type: application/json",
        f"body ({len(seen.get('handler_saw', ''))} bytes):",
        f"  {short(seen.get('handler_saw'), 35)}",
    ]
    for a, b in zip(left, right):
        say(f"  {short(a, 34):<34} | {b}")
    say(f"  -> {resp.status_code}, charged {seen.get('charged')} (reply sealed by billing, opened)")
    say("  Its key comes from orders' private key and billing's public key: no other")
    say("  service can open it, nor seal one in orders' name.")
    return wire, str(seen.get("instance"))


def step_failover(client: MicroServiceClient, billing: list[ServiceProcess]) -> None:
    heading(3, f"Failover: kill {billing[0].instance} (SIGKILL), keep calling billing")
    say("  retries=1: a failed attempt is tried once more (the default is 2), on another")
    say("  instance when there is one. A refused connection proves that nothing was")
    say("  sent, so even a POST fails over. The client logs each failover at INFO:")
    billing[0].kill()
    answered: dict[str, int] = {}
    calls = failovers = 0
    with captured("mscomm_sync.client") as records:
        while calls < _MAX_FAILOVER_CALLS and (calls < FAILOVER_CALLS or not failovers):
            shown = len(records)
            resp = client.request(
                target_service="billing", endpoint="/api/v1/charge", method="POST",
                payload={"order": 2000 + calls, "amount": calls}, timeout=5,
            )  # fmt: skip
            calls += 1
            who = resp.json()["instance"]
            answered[who] = answered.get(who, 0) + 1
            new = records[shown:]
            failovers += sum(r.getMessage().startswith("failover") for r in new)
            say(f"  call {calls}: {resp.status_code} from {who}")
            for record in new:
                show_log_line(f"    log {record.name} {record.levelname}: ", record.getMessage())
    say(f"  {calls} calls, {calls} answers, 0 errors; answered by: {answered}")
    say(f"  {failovers} failover(s): the dead instance is then avoided for a few seconds.")


def step_breaker(
    client: MicroServiceClient, shipping: ServiceProcess, transitions: list[Transition]
) -> None:
    heading(4, "Circuit breaker: take shipping down, then bring it back")
    say("  threshold=3: three failed calls in a row open shipping's circuit (default 5);")
    say("  recovery_timeout=2: after 2 s one probe call is let through (default 30 s).")
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
            shown = _show_transitions(transitions, shown)
        shipping.start()
        say("  shipping restarted")
        breaker = client.breaker("shipping")
        time.sleep(min(max(breaker.open_remaining, 0.0) + 0.05, 5.0))
        resp = client.request(target_service="shipping", endpoint="/api/v1/quote", timeout=5)
        say(f"  call 6: probe allowed -> {resp.status_code} {resp.json()} ")
        _show_transitions(transitions, shown)
    states = [old for _, old, _ in transitions[:1]] + [new for _, _, new in transitions]
    say(f"  breaker transitions: {' -> '.join(states) or '(none)'}")


def _show_transitions(transitions: list[Transition], shown: int) -> int:
    """Print the transitions after the first ``shown``; return how many there are now."""
    for service, old, new in transitions[shown:]:
        say(f"          breaker {service}: {old} -> {new}")
    return len(transitions)


def step_replay(wire: requests.PreparedRequest, took: str, billing: list[ServiceProcess]) -> None:
    heading(5, "Replay: send the request captured in step 2 again, byte for byte")
    restarted = billing[0]
    restarted.start()
    say(f"  {restarted.instance}, killed in step 3, is started again (same port, new processes)")
    parts = urlsplit(wire.url or "")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {k: v for k, v in wire.headers.items() if k.lower() != "connection"}
    for proc in billing:
        before = len(proc.log_lines())
        url = proc.url + target
        resp = requests.post(url, data=wire_body(wire), headers=headers, timeout=5)
        role = "took the original call" if proc.instance == took else "never saw it"
        say(f"  replayed to {proc.instance} ({role}):")
        say(f"    {url} -> {resp.status_code} {resp.text.strip()}")
        line = proc.wait_for_log(before, "refused")
        show_log_line(f"    {proc.instance}'s log: ", line or "(no refusal line within 5 s)")
    say("  Every instance refuses it: the instances on a host share one replay store, so")
    say("  a sealed request runs once per host, whichever instance it reaches. The")
    say("  caller only learns 401; the reason is in billing's log, and only there.")


def step_through_a_service(web: MicroServiceClient) -> None:
    heading(6, "A call through a service: web -> orders -> billing + shipping")
    resp = web.request(
        target_service="orders", endpoint="/api/v1/checkout", method="POST",
        payload={"order": 3000, "amount": 7}, timeout=10,
    )  # fmt: skip
    body = resp.json()
    say(f"  -> {resp.status_code}: billed by {body['billing']['instance']}, "
        f"{body['shipping']['days']} days by {body['shipping']['instance']}")  # fmt: skip
    say("  orders called billing and shipping with its own key: the trust file lets web")
    say("  call orders, and orders call billing and shipping, and nothing else.")


def step_why() -> None:
    heading(7, "Why this, rather than plain HTTPS or a service mesh?")
    for line in (
        "HTTPS protects a connection up to whatever ends it (a load balancer, an",
        "ingress, a proxy). The service behind it learns nothing verified about the",
        "caller, and anything that saw the request in clear can send it again.",
        "A mesh's mTLS proves which workload connected, sidecar to sidecar; the app",
        "still takes plaintext and the caller's name from its own sidecar, and a",
        "request sent again by anything that saw it in clear is accepted.",
        "Here the seal goes from the calling code to the called app: billing's handler",
        "got a verified caller (step 2), each request ran once per host (step 5), each",
        "answer is bound to its request, and there is no CA or sidecar to run. What it",
        "does not give (forward secrecy; replays across hosts) is in docs/security.md.",
    ):
        say(f"  {line}")
