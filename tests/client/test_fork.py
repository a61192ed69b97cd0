"""A client used before fork() keeps working in the child, with its own pools."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

import pytest

from .servers import Recorder, echo, json_app, sealed

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # The test process has server threads; the child only uses the client.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


def test_client_works_after_fork(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """In a forked child the client rebuilds its pools and state, and its calls succeed."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/echo": echo})))
    client = make_client()
    assert client.request(target_service="billing", endpoint="/echo").status_code == 200
    parent_pools = client.get_adapter("mscomm://billing").transport.poolmanager
    parent_breaker = client.breaker("billing")
    parent_buffers = client.get_adapter("mscomm://billing").transport.buffers
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            resp = client.request(target_service="billing", endpoint="/echo", method="POST",
                                  payload={"from": "child", "pad": "x" * 100_000})  # fmt: skip
            transport = client.get_adapter("mscomm://billing").transport
            fresh = transport.poolmanager is not parent_pools
            # The kept read buffers too: their lock may be held by a parent thread.
            fresh = (
                fresh and transport.buffers is not parent_buffers and len(transport.buffers) == 1
            )
            rebuilt = client.breaker("billing") is not parent_breaker
            large = len(resp.content) > 100_000 and b"child" in resp.content
            code = 0 if (resp.status_code == 200 and fresh and rebuilt and large) else 2
        except BaseException:
            code = 3
        finally:
            sys.stdout.flush()
            os._exit(code)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("child did not finish")
    assert status is not None and os.waitstatus_to_exitcode(status) == 0
    assert recorder.callers.count("orders") == 2
    assert client.request(target_service="billing", endpoint="/echo").status_code == 200
