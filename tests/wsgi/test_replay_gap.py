"""A restart that forgets the replay table costs at most a retry, never a replay.

The host-wide table lives on tmpfs: a reboot, a new container or a new
``/dev/shm`` starts it empty. A request captured before such a restart must
not run again after it.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests
from support.apps import DELIVERY_LOG_ENV
from support.gunicorn import GunicornServer
from support.sealing import KEYS, Call, open_reply, prepare, send

from mscomm_sync.envelope import NOT_EXECUTED_CONTENT_TYPE
from mscomm_sync.keyring import env_var_name
from mscomm_sync.replay import ShmReplayStore


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {env_var_name(name): key for name, key in KEYS.items()}
    env.update(SERVICE_NAME="billing", MSCOMM_REPLAY_DB=str(tmp_path / "replay.table"))
    env[DELIVERY_LOG_ENV] = str(tmp_path / "deliveries.log")
    return env


def ran(tmp_path: Path, path: str) -> list[str]:
    """The statuses the app answered ``path`` with, across restarts."""
    log = tmp_path / "deliveries.log"
    rows = [line.split(" ", 2) for line in log.read_text().splitlines()] if log.exists() else []
    return [status for _pid, status, where in rows if where == path]


def next_second() -> None:
    """Wait until the wall clock enters its next whole second (under one second)."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)


def test_captured_request_is_not_run_again_after_the_table_is_lost(tmp_path: Path) -> None:
    """A request delivered before a restart that emptied the table is answered, after it,
    with the middleware's sealed "not run" 503 (not the app's 200), and the app never
    runs it twice; a request sealed after the restart runs."""
    env = server_env(tmp_path)
    with requests.Session() as session:
        with GunicornServer("support.apps:replay_app()", workers=2, env=env) as server:
            captured, sealed, target = prepare(server.url + "/charge", body=b'{"amount": 1}')
            assert session.send(captured.copy(), timeout=30).status_code == 200
            assert session.send(captured.copy(), timeout=30).status_code == 401  # remembered
        (tmp_path / "replay.table").unlink()  # tmpfs cleared by the restart
        next_second()
        with GunicornServer("support.apps:replay_app()", workers=2, env=env) as server:
            captured.url = server.url + "/charge"
            replayed = session.send(captured.copy(), timeout=30)
            assert replayed.status_code == 503
            assert replayed.headers["Retry-After"] == "1"
            # The answer is the middleware's, sealed for the captured request.
            opened = open_reply(
                Call(sealed=sealed, method="POST", target=target, response=replayed)
            )
            assert opened.content_type == NOT_EXECUTED_CONTENT_TYPE
            fresh = send(session, server.url + "/charge", body=b'{"amount": 2}')
            assert fresh.response.status_code == 200
    assert ran(tmp_path, "/charge") == ["200", "401", "503", "200"]


def test_a_new_table_records_when_it_began(tmp_path: Path) -> None:
    """The table's not_before is the first whole second not before it was made, kept in the
    file for every process."""
    before = time.time()
    store = ShmReplayStore(tmp_path / "t.table", max_entries=64)
    first = store.not_before
    assert before <= first <= time.time() + 1 and first == int(first)
    store.close()
    assert ShmReplayStore(tmp_path / "t.table", max_entries=64).not_before == first
