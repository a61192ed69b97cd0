"""What the app routes is what was verified, whatever the server does to SCRIPT_NAME.

gunicorn takes a ``SCRIPT_NAME`` request header from addresses in
``--forwarded-allow-ips`` and moves that prefix out of ``PATH_INFO``, while
Flask and Django route on ``PATH_INFO`` alone. The middleware holds every
request to its configured mount point (default: the root) before anything
else, so an added header can neither re-route a sealed request nor walk a
plaintext one past an exempt path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.apps import RUN_LOG_ENV
from support.gunicorn import GunicornServer
from support.sealing import KEYS, keyring, open_reply, prepare, send

from mscomm_sync import FileRegistry, MicroServiceClient, RequestRejectedError
from mscomm_sync.keyring import env_var_name

APPS = {
    "flask": ("support.apps:notes_app()", ""),
    "django": ("django_project.wsgi:application", "/"),
}


@pytest.fixture(scope="module", params=sorted(APPS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GunicornServer, Path, str]]:
    """Each app under gunicorn trusting 127.0.0.1's forwarded headers; its run log; its slash."""
    spec, slash = APPS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    env = {env_var_name(name): key for name, key in KEYS.items()}
    env.update(
        MSCOMM_REPLAY_DB=str(tmp / "replay.table"),
        DJANGO_SETTINGS_MODULE="django_project.settings",
        **{RUN_LOG_ENV: str(tmp / "runs.log")},
    )
    args = ("--forwarded-allow-ips", "127.0.0.1")
    with GunicornServer(
        spec, workers=1, env=env, ready_path="/health/", args=args, worker_class="gthread"
    ) as live:
        yield live, tmp / "runs.log", slash


def runs(log: Path) -> list[str]:
    """The paths the app's views ran, in order."""
    return log.read_text().split("\n")[:-1] if log.exists() else []


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_sealed_request_with_a_script_name_header_is_refused(
    served: tuple[GunicornServer, Path, str], session: requests.Session
) -> None:
    """A sealed POST /notes/admin/wipe with SCRIPT_NAME: /notes added on the path gets 400,
    and no view runs (gunicorn would have handed the app /admin/wipe)."""
    server, log, slash = served
    before = runs(log)
    prepared, _, _ = prepare(server.url + "/notes/admin/wipe" + slash)
    prepared.headers["SCRIPT_NAME"] = "/notes"
    assert session.send(prepared, timeout=30).status_code == 400
    assert runs(log) == before


def test_the_same_sealed_request_without_the_header_runs_what_was_sealed(
    served: tuple[GunicornServer, Path, str], session: requests.Session
) -> None:
    """Without the header, the sealed request runs exactly its own endpoint."""
    server, log, slash = served
    before = runs(log)
    call = send(session, server.url + "/notes/admin/wipe" + slash)
    assert call.response.status_code == 200
    assert json.loads(open_reply(call).body)["ran"] == "/notes/admin/wipe" + slash
    assert runs(log) == [*before, f"/notes/admin/wipe{slash} orders"]


def test_plaintext_request_cannot_walk_past_an_exempt_path(
    served: tuple[GunicornServer, Path, str], session: requests.Session
) -> None:
    """A plaintext GET /health/ with SCRIPT_NAME: /health gets 400 instead of reaching the
    protected / view unsealed; without the header it is the exempt health check."""
    server, log, _ = served
    before = runs(log)
    refused = session.get(server.url + "/health/", headers={"SCRIPT_NAME": "/health"}, timeout=30)
    assert refused.status_code == 400
    assert runs(log) == before
    assert session.get(server.url + "/health/", timeout=30).status_code == 200


def test_the_real_client_gets_the_refusal(
    served: tuple[GunicornServer, Path, str], tmp_path: Path
) -> None:
    """A real client call whose SCRIPT_NAME header was added on the path fails as a
    refusal, not as a verified answer from another view."""
    server, log, slash = served
    before = runs(log)
    registry = FileRegistry(tmp_path / "registry.json")
    registry.register("billing", server.url)
    with MicroServiceClient("orders", registry=registry, keyring=keyring()) as client:
        with pytest.raises(RequestRejectedError) as info:
            client.request(
                target_service="billing",
                endpoint="/notes/admin/wipe" + slash,
                method="POST",
                headers={"SCRIPT_NAME": "/notes"},
            )
        assert info.value.status == 400
    registry.close()
    assert runs(log) == before
