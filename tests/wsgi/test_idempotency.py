"""Idempotency keys end to end: a real client, a real server, the handler run at most once.

orders calls billing's ``/charge`` with ``idempotency_key=``; billing's
middleware honours keys (``idempotency=``) with a store of the test's own.
Every test counts how often the handler really ran.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import requests
from support.fleet import Fleet
from support.forge import forge
from support.mitm import MitmProxy

from mscomm_sync import (
    ConfigurationError,
    FileRegistry,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    IdempotentAnswerLostError,
    MaybeDeliveredError,
    MicroServiceClient,
    NotDeliveredError,
)
from mscomm_sync.client.policies import CallPolicy, RetryPolicy, TimeoutPolicy
from mscomm_sync.errors import IdempotencyStoreError
from mscomm_sync.idempotency import MemoryIdempotencyStore, SqliteIdempotencyStore
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.trust import Identity, TrustStore
from mscomm_sync.wsgi import EncryptionMiddleware, Idempotency

KEY = "charge-1001"


class Charges:
    """billing's /charge handler: counts its runs; can be held, made to fail, or to grow."""

    def __init__(self) -> None:
        self.runs: list[bytes] = []
        self.hold: Optional[threading.Event] = None
        self.entered = threading.Event()
        self.fail_first = 0
        self.size = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.runs.append(body)
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(30)
        if self.fail_first:
            self.fail_first -= 1
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": "try again"}']
        answer = {"charge": len(self.runs), "caller": environ["mscomm.caller"]}
        payload = json.dumps(answer).encode() + b" " * self.size
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Charge", "c1")])
        return [payload]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet("orders", "shipping", "billing")


@pytest.fixture
def charges() -> Charges:
    return Charges()


def billing(fleet: Fleet, app: Any, idempotency: Any, **options: Any) -> EncryptionMiddleware:
    return EncryptionMiddleware(
        app,
        "billing",
        identity=fleet.identity("billing"),
        trust=fleet.trust("orders", "shipping"),
        allowed_callers=["orders", "shipping"],
        replay_store=MemoryReplayStore(),
        idempotency=idempotency,
        **options,
    )


@pytest.fixture
def store() -> MemoryIdempotencyStore:
    return MemoryIdempotencyStore()


@pytest.fixture
def server(fleet: Fleet, charges: Charges, store: MemoryIdempotencyStore) -> Iterator[LiveServer]:
    with LiveServer(billing(fleet, charges, Idempotency(store=store))) as live:
        yield live


@pytest.fixture
def registry(tmp_path: Path, server: LiveServer) -> Iterator[FileRegistry]:
    reg = FileRegistry(tmp_path / "registry.json")
    reg.register("billing", server.url)
    yield reg
    reg.close()


def client(fleet: Fleet, registry: FileRegistry, name: str = "orders", **options: Any) -> Any:
    return MicroServiceClient(
        name, registry=registry, identity=fleet.identity(name), trust=fleet.trust("billing"),
        **options,
    )  # fmt: skip


def charge(orders: MicroServiceClient, amount: int = 10, **kwargs: Any) -> requests.Response:
    return orders.request(
        target_service="billing", endpoint="/charge", method="POST",
        payload={"amount": amount}, **kwargs,
    )  # fmt: skip


def test_a_repeat_gets_the_first_answer_and_the_handler_ran_once(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    with client(fleet, registry) as orders:
        first = charge(orders, idempotency_key=KEY)
        again = [charge(orders, idempotency_key=KEY) for _ in range(3)]
    assert len(charges.runs) == 1
    assert first.status_code == 201 and first.headers["X-Mscomm-Idempotency"] == "kept"
    for repeat in again:
        assert (repeat.status_code, repeat.content) == (201, first.content)
        assert repeat.headers["X-Charge"] == "c1"
        assert repeat.headers["X-Mscomm-Idempotency"] == "replayed"


def test_keys_are_per_caller_and_calls_without_one_always_run(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    with client(fleet, registry) as orders, client(fleet, registry, "shipping") as shipping:
        assert charge(orders, idempotency_key=KEY).json()["caller"] == "orders"
        assert charge(shipping, idempotency_key=KEY).json()["caller"] == "shipping"
        charge(orders)
        charge(orders)
    assert len(charges.runs) == 4


def test_a_key_reused_for_another_body_is_refused_and_does_not_run(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    with client(fleet, registry) as orders:
        charge(orders, 10, idempotency_key=KEY)
        with pytest.raises(IdempotencyKeyReusedError) as info:
            charge(orders, 99, idempotency_key=KEY)
        with pytest.raises(IdempotencyKeyReusedError):
            orders.request(
                target_service="billing", endpoint="/other", method="POST",
                payload={"amount": 10}, idempotency_key=KEY,
            )  # fmt: skip
    assert len(charges.runs) == 1
    error = info.value
    assert (error.service, error.idempotency_key, error.status) == ("billing", KEY, 422)


def test_a_repeat_while_the_first_runs_is_told_so_and_not_run(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    """With no retries left the client raises IdempotencyInProgressError (may have run)."""
    charges.hold = threading.Event()
    no_retry = CallPolicy(retry=RetryPolicy(retries=0))
    with client(fleet, registry) as orders, client(fleet, registry, policy=no_retry) as impatient:
        first: list[requests.Response] = []
        worker = threading.Thread(target=lambda: first.append(charge(orders, idempotency_key=KEY)))
        worker.start()
        assert charges.entered.wait(10)
        try:
            with pytest.raises(IdempotencyInProgressError) as info:
                charge(impatient, idempotency_key=KEY)
        finally:
            charges.hold.set()
            worker.join(30)
        assert isinstance(info.value, MaybeDeliveredError)
        assert info.value.retry_after >= 1
        assert charge(impatient, idempotency_key=KEY).content == first[0].content
    assert len(charges.runs) == 1


def test_an_attempt_that_timed_out_is_retried_and_answered_once(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    """The key makes a POST retryable: the first attempt times out while the handler runs,
    the retries find it running (409), then get its answer. The handler ran once."""
    charges.hold = threading.Event()
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # the client's pause between attempts
        pauses.append(seconds)
        charges.hold.set()  # let the first run finish
        threading.Event().wait(0.2)

    policy = CallPolicy(
        retry=RetryPolicy(retries=6), timeout=TimeoutPolicy(deadline=30, attempt=0.5)
    )
    with client(fleet, registry, policy=policy, sleep=sleep) as orders:
        answer = charge(orders, idempotency_key=KEY)
    assert answer.status_code == 201
    assert answer.headers["X-Mscomm-Idempotency"] in ("replayed", "kept")
    assert len(charges.runs) == 1
    assert pauses  # it was retried


def test_without_a_key_a_post_that_timed_out_is_not_retried(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    charges.hold = threading.Event()
    policy = CallPolicy(timeout=TimeoutPolicy(deadline=30, attempt=0.3))
    try:
        with client(fleet, registry, policy=policy) as orders, pytest.raises(MaybeDeliveredError):
            charge(orders)
    finally:
        charges.hold.set()
    assert len(charges.runs) == 1


def test_a_failed_run_releases_the_key_so_a_repeat_runs_again(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    charges.fail_first = 1
    no_retry = CallPolicy(retry=RetryPolicy(retries=0))
    with client(fleet, registry, policy=no_retry) as orders:
        failed = charge(orders, idempotency_key=KEY)
        assert (failed.status_code, failed.headers["X-Mscomm-Idempotency"]) == (503, "released")
        ok = charge(orders, idempotency_key=KEY)
        assert (ok.status_code, ok.headers["X-Mscomm-Idempotency"]) == (201, "kept")
    assert len(charges.runs) == 2


def test_an_answer_too_large_to_keep_says_so_and_repeats_are_told(
    fleet: Fleet, tmp_path: Path, charges: Charges
) -> None:
    charges.size = 2000
    app = billing(fleet, charges, Idempotency(store=MemoryIdempotencyStore(), max_answer_size=1000))
    with LiveServer(app) as live:
        reg = FileRegistry(tmp_path / "big.json")
        reg.register("billing", live.url)
        with client(fleet, reg) as orders:
            first = charge(orders, idempotency_key=KEY)
            assert first.headers["X-Mscomm-Idempotency"] == "not-kept"
            with pytest.raises(IdempotentAnswerLostError) as info:
                charge(orders, idempotency_key=KEY)
        reg.close()
    assert info.value.status == 410
    assert len(charges.runs) == 1


class BrokenStore(MemoryIdempotencyStore):
    def claim(self, scope: str, fingerprint: str, *, lease: float) -> Any:
        raise IdempotencyStoreError("down", store="<broken>", reason="down")


def test_a_failing_store_runs_nothing_and_the_call_was_not_delivered(
    fleet: Fleet, tmp_path: Path, charges: Charges
) -> None:
    with LiveServer(billing(fleet, charges, Idempotency(store=BrokenStore()))) as live:
        reg = FileRegistry(tmp_path / "broken.json")
        reg.register("billing", live.url)
        no_retry = CallPolicy(retry=RetryPolicy(retries=1, backoff_base=0))
        with client(fleet, reg, policy=no_retry) as orders, pytest.raises(NotDeliveredError):
            charge(orders, idempotency_key=KEY)
        reg.close()
    assert charges.runs == []


def test_a_service_that_does_not_honour_keys_is_logged_once(
    fleet: Fleet, tmp_path: Path, charges: Charges, caplog: pytest.LogCaptureFixture
) -> None:
    with LiveServer(billing(fleet, charges, None)) as live:
        reg = FileRegistry(tmp_path / "plain.json")
        reg.register("billing", live.url)
        with client(fleet, reg) as orders, caplog.at_level(logging.WARNING, "mscomm_sync"):
            for _ in range(2):
                assert "X-Mscomm-Idempotency" not in charge(orders, idempotency_key="k-x").headers
        reg.close()
    assert len(charges.runs) == 2
    warned = [r for r in caplog.records if "does not honour idempotency keys" in r.getMessage()]
    assert len(warned) <= 1  # once per process: an earlier test may have warned already


def test_the_key_never_appears_on_the_wire(
    fleet: Fleet, server: LiveServer, tmp_path: Path, charges: Charges
) -> None:
    """Sealed: a man in the middle sees neither the key nor the answer's idempotency state."""
    with MitmProxy(server.url) as mitm:
        reg = FileRegistry(tmp_path / "mitm.json")
        reg.register("billing", mitm.url)
        with client(fleet, reg) as orders:
            charge(orders, idempotency_key=KEY)
            charge(orders, idempotency_key=KEY)
        reg.close()
    wire = b"".join(m.encode() for m in mitm.requests + mitm.responses)
    assert KEY.encode() not in wire
    assert b"Idempotency" not in wire and b"replayed" not in wire
    assert len(charges.runs) == 1


def test_a_key_with_protocol_v1_fails_before_anything_is_sent(
    tmp_path: Path, charges: Charges
) -> None:
    shared = {"orders": generate_key(), "billing": generate_key()}
    app = EncryptionMiddleware(
        charges, "billing", keyring=Keyring.from_mapping(shared),
        identity=Identity("billing", environ={}), allowed_callers=["orders"],
        replay_store=MemoryReplayStore(), idempotency=Idempotency(store=MemoryIdempotencyStore()),
    )  # fmt: skip
    with LiveServer(app) as live:
        reg = FileRegistry(tmp_path / "v1.json")
        reg.register("billing", live.url)
        with MicroServiceClient(
            "orders", registry=reg, keyring=Keyring.from_mapping(shared),
            identity=Identity("orders", environ={}), trust=TrustStore(environ={}),
        ) as orders:  # fmt: skip
            with pytest.raises(ConfigurationError) as info:
                charge(orders, idempotency_key=KEY)
            assert charge(orders).status_code == 201  # v1 without a key still works
        reg.close()
    assert info.value.variable == "idempotency_key"
    assert len(charges.runs) == 1


def test_an_unsealed_v1_key_header_is_not_honoured(tmp_path: Path, charges: Charges) -> None:
    """Only a key inside the seal counts: a v1 request's clear header is anyone's to write."""
    shared = {"orders": generate_key(), "billing": generate_key()}
    app = EncryptionMiddleware(
        charges, "billing", keyring=Keyring.from_mapping(shared),
        identity=Identity("billing", environ={}), allowed_callers=["orders"],
        replay_store=MemoryReplayStore(), idempotency=Idempotency(store=MemoryIdempotencyStore()),
    )  # fmt: skip
    with LiveServer(app) as live:
        for _ in range(2):
            forged = forge(
                secret=base64.urlsafe_b64decode(shared["orders"] + "="), sender="orders",
                recipient="billing", method="POST", target="/charge", body=b"{}",
            )  # fmt: skip
            headers = {**forged.headers, "Idempotency-Key": KEY}
            sent = requests.post(
                live.url + "/charge", headers=headers, data=forged.body, timeout=10
            )
            assert sent.status_code == 201
            assert "X-Mscomm-Idempotency" not in sent.headers
    assert len(charges.runs) == 2


@pytest.mark.parametrize("key", ["", "has space", "é", "x" * 256, "tab\there"])
def test_an_invalid_key_is_a_configuration_error_naming_the_option(
    fleet: Fleet, registry: FileRegistry, charges: Charges, key: str
) -> None:
    with client(fleet, registry) as orders, pytest.raises(ConfigurationError) as info:
        charge(orders, idempotency_key=key)
    assert info.value.variable == "idempotency_key"
    assert key not in str(info.value) or not key
    assert charges.runs == []


def test_the_url_form_takes_the_key_as_a_header(
    fleet: Fleet, registry: FileRegistry, charges: Charges
) -> None:
    with client(fleet, registry) as orders:
        for _ in range(2):
            resp = orders.post("mscomm://billing/charge", json={"a": 1},
                               headers={"Idempotency-Key": KEY})  # fmt: skip
            assert resp.status_code == 201
        with pytest.raises(TypeError):
            orders.request("POST", "mscomm://billing/charge", idempotency_key=KEY)
    assert len(charges.runs) == 1


@pytest.mark.parametrize(
    ("option", "value"), [("retention", 0), ("lease", -1), ("lease", float("nan")),
                          ("max_answer_size", -1)],
)  # fmt: skip
def test_invalid_settings_are_configuration_errors(option: str, value: float) -> None:
    with pytest.raises(ConfigurationError) as info:
        Idempotency(**{option: value})
    assert info.value.variable == option


def test_idempotency_true_uses_the_host_wide_store(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSCOMM_IDEMPOTENCY_DB", str(tmp_path / "host.sqlite3"))
    app = billing(fleet, Charges(), True)
    assert app.idempotency is not None
    assert isinstance(app.idempotency.store, SqliteIdempotencyStore)
    assert app.idempotency.store.path == tmp_path / "host.sqlite3"
    assert billing(fleet, Charges(), False).idempotency is None
    with pytest.raises(ConfigurationError):
        billing(fleet, Charges(), "yes")


# -- several worker processes: the host-wide store --------------------------------


def test_gunicorn_workers_share_the_key_so_concurrent_repeats_run_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Eight threads send one keyed charge at once to two gunicorn workers with the default
    (host-wide) store: the handler runs once and every call gets its answer (or is told it
    is still running)."""
    from support.apps import HOLD_ENV, RUN_LOG_ENV
    from support.gunicorn import GunicornServer

    runs = tmp_path / "runs.log"
    env = fleet.server_environ(
        "billing", "orders", tmp_path, **{RUN_LOG_ENV: str(runs), HOLD_ENV: "0.5"}
    )
    with GunicornServer("support.apps:charge_app()", workers=2, env=env) as server:
        reg = FileRegistry(tmp_path / "gunicorn.json")
        reg.register("billing", server.url)
        barrier = threading.Barrier(8)
        outcomes: list[Any] = []
        policy = CallPolicy(retry=RetryPolicy(retries=4), timeout=TimeoutPolicy(deadline=30))

        def send() -> None:
            with client(fleet, reg, policy=policy) as orders:
                barrier.wait(10)
                try:
                    outcomes.append(charge(orders, 7, idempotency_key="order-77").content)
                except IdempotencyInProgressError as exc:
                    outcomes.append(exc)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        reg.close()
    assert runs.read_text().splitlines() == ["/charge orders"]
    answers = {o for o in outcomes if isinstance(o, bytes)}
    assert len(outcomes) == 8 and len(answers) == 1


def charge_and_kill_the_worker(
    fleet: Fleet, tmp_path: Path, app: str, **extra: str
) -> tuple[requests.Response, requests.Response, list[str], int]:
    """Serve ``app`` under gunicorn with one worker; kill it (SIGKILL) inside its handler,
    after the charge was made and before it answered; let the client's retry finish the
    call, then repeat it once more.

    Returns the call's answer, the repeat's, the run log's lines and the killed worker's pid.
    """
    from support.apps import HOLD_ENV, HOLD_FIRST_ENV, RUN_LOG_ENV
    from support.gunicorn import GunicornServer, children_of

    runs = tmp_path / "runs.log"
    # The first run holds its answer until it is killed (at most 30 s); later runs do not.
    holds = {HOLD_FIRST_ENV: "30", HOLD_ENV: "0"}
    env = fleet.server_environ(
        "billing", "orders", tmp_path, **{RUN_LOG_ENV: str(runs)}, **holds, **extra
    )
    outcome: list[Any] = []
    with GunicornServer(app, workers=1, env=env) as server:
        reg = FileRegistry(tmp_path / "killed.json")
        reg.register("billing", server.url)
        # The lease (60 s) is longer than the deadline: only the dead claimant's claim
        # ending at once lets the repeat in before the call gives up. An attempt may wait
        # 20 s, for gunicorn's new worker to start on a slow host.
        policy = CallPolicy(
            retry=RetryPolicy(retries=4), timeout=TimeoutPolicy(deadline=45, attempt=20)
        )
        with client(fleet, reg, policy=policy) as orders:

            def send() -> None:
                try:
                    outcome.append(charge(orders, 7, idempotency_key="order-77"))
                except Exception as exc:  # reported by the assertion below
                    outcome.append(exc)

            thread = threading.Thread(target=send)
            thread.start()
            deadline = time.monotonic() + 30
            while not (runs.exists() and runs.read_text()) and time.monotonic() < deadline:
                time.sleep(0.02)  # until the handler has charged, and holds the answer
            assert runs.exists() and runs.read_text(), "the handler never ran"
            [worker] = children_of(server.pid)
            os.kill(worker, signal.SIGKILL)
            thread.join(60)
            assert not thread.is_alive(), "the call did not end"
            again = charge(orders, 7, idempotency_key="order-77")
        reg.close()
    [first] = outcome
    assert isinstance(first, requests.Response), first
    assert first.headers["X-Mscomm-Idempotency"] == "kept"  # the retry's run: kept
    assert again.headers["X-Mscomm-Idempotency"] == "replayed"
    assert again.content == first.content
    return first, again, runs.read_text().splitlines(), worker


def test_a_worker_killed_after_its_handler_ran_leaves_the_key_to_a_repeat_that_runs_again(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The one window no store closes: billing's only worker is killed (SIGKILL) after the
    handler ran and before the middleware kept its answer. The claim belongs to a dead
    process, so it is given up at once (not after its 60 s lease): the client's repeat
    with the key runs the handler a second time, and that answer is kept for the next."""
    first, _, runs, worker = charge_and_kill_the_worker(
        fleet, tmp_path, "support.apps:charge_app()"
    )
    assert runs == ["/charge orders"] * 2  # the repeat ran it again
    assert json.loads(first.content)["pid"] != worker  # answered by gunicorn's new worker


def test_a_charge_committed_with_its_key_is_made_once_even_when_the_worker_is_killed(
    fleet: Fleet, tmp_path: Path
) -> None:
    """docs/idempotency.md's recipe closes that window: the charge and its (caller, key)
    commit in one transaction under a unique constraint. The killed worker had committed,
    so the repeat's run finds the row: the handler ran twice, the ledger holds one charge,
    and the caller is answered with it (made by the killed worker)."""
    import sqlite3

    from support.apps import LEDGER_ENV

    ledger = tmp_path / "ledger.sqlite3"
    first, _, runs, worker = charge_and_kill_the_worker(
        fleet, tmp_path, "support.apps:ledger_app()", **{LEDGER_ENV: str(ledger)}
    )
    assert runs == ["/charge orders"] * 2
    with contextlib.closing(sqlite3.connect(ledger)) as db:
        rows = db.execute("SELECT caller, key, amount, pid FROM charges").fetchall()
    assert rows == [("orders", "order-77", 7, worker)]  # one charge, the killed worker's
    assert json.loads(first.content) == {"charged": 7, "pid": worker}


def test_instances_sharing_a_redis_store_answer_a_repeat_once(
    fleet: Fleet, tmp_path: Path, charges: Charges
) -> None:
    """Two instances (as on two hosts) sharing Redis: a repeat that reaches the other
    instance gets the first answer; the handler ran once."""
    from support.redis_server import redis_server

    from mscomm_sync.idempotency import RedisIdempotencyStore

    with redis_server(tmp_path) as redis:
        stores = [RedisIdempotencyStore.from_url(redis.db(0)) for _ in range(2)]
        apps = [billing(fleet, charges, Idempotency(store=s)) for s in stores]
        with LiveServer(apps[0]) as one, LiveServer(apps[1]) as two:
            answers = []
            for url in (one.url, two.url, one.url):
                reg = FileRegistry(tmp_path / f"r{len(answers)}.json")
                reg.register("billing", url)
                with client(fleet, reg) as orders:
                    answers.append(charge(orders, idempotency_key=KEY))
                reg.close()
        for store in stores:
            store.client.close()
    assert [a.headers["X-Mscomm-Idempotency"] for a in answers] == ["kept", "replayed", "replayed"]
    assert len({a.content for a in answers}) == 1
    assert len(charges.runs) == 1
