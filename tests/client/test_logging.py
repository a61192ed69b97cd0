"""What the client logs to ``mscomm_sync.client``: retries, failovers, warnings, never data."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest

from mscomm_sync.errors import InsecureResponseError, RequestRejectedError
from mscomm_sync.registry import FileRegistry
from mscomm_sync.registry.health import HealthCheckConfig

from .servers import Recorder, dead_url, echo, json_app, sealed

Reply = tuple[int, list[tuple[str, str]], bytes]


def client_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the records of the client's logger."""
    return [r for r in caplog.records if r.name == "mscomm_sync.client"]


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the client's retry and failover records."""
    return [r for r in client_lines(caplog) if r.getMessage().startswith(("retry ", "failover "))]


def test_one_line_per_failover(
    serve: Callable[..., Any],
    registry: FileRegistry,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retry on another instance logs exactly one failover line with its facts."""
    dead = dead_url()
    registry.register("billing", dead)
    live = serve(sealed(json_app(Recorder(), {"/echo": echo}))).url
    first = registry.get_instances("billing")[0].url
    pick_dead: Callable[[], float] = (lambda: 0.0) if first == dead else (lambda: 0.99)
    caplog.set_level(logging.INFO, logger="mscomm_sync.client")
    resp = make_client(random=pick_dead).request(target_service="billing", endpoint="/echo")
    assert resp.status_code == 200
    lines = retry_lines(caplog)
    assert [r.levelno for r in lines] == [logging.INFO]
    message = lines[0].getMessage()
    assert message.startswith(
        f"failover service=billing instance={live} from={dead} attempt=2 reason=connection refused "
    )


def test_one_line_per_retry(
    serve: Callable[..., Any], make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry on the same instance logs exactly one retry line with its facts."""
    answers: list[Reply] = [(503, [], b""), (503, [], b""), (200, [], b"ok")]
    lock = threading.Lock()

    def flaky(environ: dict[str, Any]) -> Reply:
        with lock:
            return answers.pop(0)

    url = serve(sealed(json_app(Recorder(), {"/x": flaky}))).url
    caplog.set_level(logging.INFO, logger="mscomm_sync.client")
    assert make_client().request(target_service="billing", endpoint="/x").content == b"ok"
    messages = [r.getMessage() for r in retry_lines(caplog)]
    assert len(messages) == 2
    for attempt, message in zip((2, 3), messages):
        assert message.startswith(
            f"retry service=billing instance={url} attempt={attempt} reason=status 503 "
        )


def test_all_unhealthy_tried_anyway(
    serve: Callable[..., Any],
    registry: FileRegistry,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When every instance is marked unhealthy, one is called anyway and a warning logged."""
    recorder = Recorder()
    server = serve(sealed(json_app(recorder, {"/echo": echo})))
    registry.register("billing", server.url, health_endpoint="/down")
    poller = registry.make_health_poller(HealthCheckConfig(fall=1, timeout=5))
    try:
        poller.poll_once()
    finally:
        poller.stop()
    assert [i.healthy for i in registry.get_instances("billing")] == [False]
    caplog.set_level(logging.WARNING, logger="mscomm_sync.client")
    resp = make_client().request(target_service="billing", endpoint="/echo")
    assert resp.status_code == 200
    assert recorder.hits["/echo"] == 1
    assert [(r.levelno, r.getMessage()) for r in client_lines(caplog)] == [
        (logging.WARNING, "every instance of service=billing is marked unhealthy; trying anyway")
    ]


@pytest.mark.parametrize(
    ("status", "error"), [(401, RequestRejectedError), (502, InsecureResponseError)]
)
def test_query_never_logged(
    serve: Callable[..., Any],
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    status: int,
    error: type[Exception],
) -> None:
    """The warning for a refusal or an unsealed answer names the URL without its query."""
    serve(json_app(Recorder(), {"/charge": lambda environ: (status, [], b"")}))
    caplog.set_level(logging.DEBUG, logger="mscomm_sync")
    with pytest.raises(error):
        make_client().request(
            target_service="billing",
            endpoint="/charge",
            method="POST",
            params={"card": "secret-4242"},
        )
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("mscomm_sync")]
    assert any(f"status={status} " in m and "/charge" in m for m in messages)
    assert not any("secret-4242" in m for m in messages)
