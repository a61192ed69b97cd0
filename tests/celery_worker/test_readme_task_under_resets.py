"""The README's Celery task, run by a real prefork worker with a Redis broker, through 20%
connection resets and killed worker processes: none is lost, and no order is charged twice
but the one a killed billing worker may have charged without keeping its answer.

* billing is the README's Flask service (``examples/flask_service.py``, which
  honours idempotency keys) under gunicorn with two sync workers, which close
  every connection after one answer, so every attempt is a new connection;
* a FaultProxy in front of it resets 20% of the connections just as billing's
  answer starts, after the charge ran: the worst case, an answer lost;
* the worker runs ``examples/celery_tasks.py`` unchanged (``celery -A
  celery_tasks worker --pool=prefork --concurrency=3``), its broker and results
  in a real redis-server on 127.0.0.1;
* 100 tasks, one per order; after the first results, one of the worker's pool
  children and one of billing's gunicorn workers are killed (SIGKILL), and
  Celery and gunicorn replace them.

A lost answer is retried by the client (the key makes the POST repeatable)
and, once the client gives up, by Celery (``MaybeDeliveredError``); every
repeat with the key gets billing's first answer again instead of a second
charge. A task whose child was killed is run again (``task_acks_late`` and
``task_reject_on_worker_lost``), with the same key.

One repeat runs the charge again by design: the killed gunicorn worker may
have been killed after its view charged and before the middleware kept the
answer. Its claim then belongs to a dead process and is given up, so the
repeat charges a second time (docs/idempotency.md, "When the service's process
dies"). A sync worker runs one request at a time, so that is at most the
killed worker's last charge, and only it. Every wait is bounded; nothing is
timed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from support.apps import RUN_LOG_ENV
from support.fleet import Fleet
from support.gunicorn import GunicornServer, children_of
from support.redis_server import redis_server

from mscomm_sync import FileRegistry
from mscomm_sync.testing import Fault, FaultProxy

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
TASKS = 100
WAIT = 240.0  # seconds for all the tasks: an upper bound on a slow machine, never a measurement
# 50 ms more per connection keeps tasks in flight long enough for a kill to meet one.
RESETS = Fault(reset_after=0, reset_direction="downstream", probability=0.2, latency=0.05)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet("orders", "billing")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def setup(fleet: Fleet, tmp_path: Path) -> Iterator[dict[str, Any]]:
    runs = tmp_path / "runs.log"
    billing_env = fleet.server_environ("billing", "orders", tmp_path, **{RUN_LOG_ENV: str(runs)})
    registry_path = tmp_path / "registry.json"
    with (
        redis_server(tmp_path) as redis,
        GunicornServer("support.apps:readme_billing()", workers=2, env=billing_env) as billing,
        FaultProxy(billing.url, fault=RESETS) as proxy,
        FileRegistry(registry_path) as registry,
    ):
        registry.register("billing", proxy.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSCOMM_TEST")}
        env.update(fleet.environ("billing", private=["orders"]))
        env.update(
            MSCOMM_REGISTRY=str(registry_path),
            CELERY_BROKER_URL=redis.db(0),
            PYTHONPATH=os.pathsep.join([str(ROOT / "examples"), str(ROOT)]),
        )
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_tasks",
                 "--result-backend", redis.db(1), "worker", "--pool=prefork",
                 "--concurrency=3", "--loglevel=INFO", "--without-gossip", "--without-mingle",
                 "--without-heartbeat"],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        sender = Celery("orders", broker=redis.db(0), backend=redis.db(1))
        try:
            yield {"sender": sender, "proxy": proxy, "runs": runs, "log": log,
                   "worker": worker.pid, "billing": billing.pid}  # fmt: skip
        finally:
            stop(worker)
            # Close the results subscription before redis-server stops. Celery's results
            # unsubscribe when they are collected, which may be tests later: without a
            # subscription left (``_pubsub`` None) they do nothing, instead of reconnecting
            # to a redis-server that is gone, for 20 s, in whatever test is running then.
            consumer = sender.backend.result_consumer
            consumer.stop()
            consumer._pubsub = None
            sender.close()


def answer_of(result: Any, deadline: float) -> Any:
    """The task's result, read from the backend until ``deadline`` (monotonic).

    Polled, not awaited: ``result.get()`` waits on a Redis subscription, and with some
    Celery and redis-py releases a result stored before the subscription took effect is
    never delivered to it, so the wait lasts its whole timeout although the result is there.
    """
    while not result.ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"task {result.id} gave no result within {WAIT} s")
        time.sleep(0.02)
    return result.get(timeout=5, propagate=True)  # ready: from the cache ready() filled


def test_every_order_is_charged_and_only_a_killed_workers_last_charge_may_repeat(
    setup: dict[str, Any],
) -> None:
    """100 tasks through resets and two kills: every one answered, every order charged,
    none twice but the one order the killed billing worker may have charged unkept."""
    sender: Celery = setup["sender"]
    results = [sender.send_task("celery_tasks.charge", args=(order, 10)) for order in range(TASKS)]
    answers = []
    killed: list[int] = []
    deadline = time.monotonic() + WAIT
    try:
        for number, result in enumerate(results):
            answers.append(answer_of(result, deadline))
            if number == 20:  # some charged, most still queued or in flight: kill a child each
                for parent in (setup["worker"], setup["billing"]):
                    victim = children_of(parent)[0]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)
    except Exception:
        print(setup["log"].read_text()[-8000:])
        raise
    runs = [line.split() for line in setup["runs"].read_text().splitlines()]
    # (order, pid of the gunicorn worker that charged it), in the order they ran.
    charges = [(int(order), int(pid)) for path, order, pid in runs if path == "/api/v1/charge"]
    charged = Counter(order for order, _ in charges)
    twice = sorted(order for order, count in charged.items() if count > 1)
    stats = setup["proxy"].stats()
    lost = setup["log"].read_text().count("WorkerLostError")
    print(
        f"[celery] {TASKS} tasks: {stats.connections} connections, {stats.reset} reset after"
        f" billing answered; killed {killed}; {lost} tasks lost a worker child and ran again;"
        f" {len(runs)} charges ran; charged again after the billing worker's kill: {twice}"
    )
    assert len(killed) == 2
    assert [a["charged"] for a in answers] == [10] * TASKS  # every task got its answer
    assert {a["caller"] for a in answers} == {"orders"}
    assert set(charged) == set(range(TASKS))  # none lost
    # None twice, but the killed billing worker's last charge, if its answer was not kept:
    # it ran first in that worker, and once more elsewhere.
    _pool_child, billing_worker = killed
    by_victim = [order for order, pid in charges if pid == billing_worker]
    assert twice in ([], by_victim[-1:]), (twice, by_victim)
    for order in twice:
        assert next(pid for o, pid in charges if o == order) == billing_worker
        assert charged[order] == 2
    assert stats.reset > 0  # the faults really happened
