"""Replay protection holds across the worker processes of a real gunicorn."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.apps import DELIVERY_LOG_ENV
from support.gunicorn import GunicornServer
from support.sealing import KEYS, open_reply, prepare, send

from mscomm_sync.keyring import env_var_name

WORKERS = 3
REPLAYS = 30
ROUNDS = 5


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {env_var_name(name): key for name, key in KEYS.items()}
    env.update(SERVICE_NAME="billing", MSCOMM_REPLAY_DB=str(tmp_path / "replay.table"))
    env[DELIVERY_LOG_ENV] = str(delivery_log(tmp_path))
    return env


def delivery_log(tmp_path: Path) -> Path:
    return tmp_path / "deliveries.log"


def deliveries(log: Path, path: str) -> list[tuple[int, int]]:
    """Return (worker pid, status) for each delivery of ``path`` the server recorded."""
    if not log.exists():
        return []
    rows = [line.split(" ", 2) for line in log.read_text().splitlines()]
    return [(int(pid), int(status)) for pid, status, where in rows if where == path]


def worker_pids(server: GunicornServer, want: int, attempts: int = 200) -> set[int]:
    """Return the worker pids seen on fresh connections (bounded attempts)."""
    seen: set[int] = set()
    for _ in range(attempts):
        with requests.Session() as s:
            call = send(s, server.url + "/who", method="GET", content_type=None)
            seen.add(json.loads(open_reply(call).body)["pid"])
        if len(seen) >= want:
            break
    return seen


def deliver(prepared: requests.PreparedRequest) -> int:
    with requests.Session() as s:
        return s.send(prepared.copy(), timeout=60).status_code


@pytest.fixture(params=[False, True], ids=["fork-per-worker", "preload"])
def gunicorn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GunicornServer]:
    with GunicornServer(
        "support.apps:replay_app()",
        workers=WORKERS,
        env=server_env(tmp_path),
        preload=request.param,
        ready_path="/health",
    ) as server:
        yield server


def test_replay_across_workers_succeeds_once(gunicorn: GunicornServer, tmp_path: Path) -> None:
    """30 concurrent deliveries of one sealed request spread over several workers: one succeeds.

    Which worker accepts a connection is up to the kernel, so a round whose
    deliveries all landed on one worker proves nothing about sharing; it is
    repeated, with a fresh request, a bounded number of times. Every round
    must let exactly one delivery through.
    """
    assert len(worker_pids(gunicorn, WORKERS)) >= 2
    spread: set[int] = set()
    for round_ in range(ROUNDS):
        path = f"/charge/{round_}"
        prepared, _, _ = prepare(gunicorn.url + path, body=b'{"amount": 1}')
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(deliver, [prepared] * REPLAYS))
        assert statuses.count(200) == 1
        assert statuses.count(401) == REPLAYS - 1
        recorded = deliveries(delivery_log(tmp_path), path)
        assert sorted(status for _, status in recorded) == sorted(statuses)
        spread = {pid for pid, _ in recorded}
        if len(spread) >= 2:
            break
    assert len(spread) >= 2, "every round's deliveries reached a single worker"
