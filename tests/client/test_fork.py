"""A client used before fork() keeps working in the child, with its own pools."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

import pytest

from mscomm_sync.registry import FileRegistry

from .servers import Recorder, WaitressServer, echo, json_app, sealed

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


CHILDREN = 40
THREADS = 8
AT_ONCE = 10


def _child_calls(client: Any) -> int:
    """In a forked child: THREADS threads make their first call at once; count wrong answers."""
    import json
    import threading

    import requests.adapters

    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    # Any pool rebuilt from here on (by the first call, not by the fork hook) takes
    # long enough that every other thread arrives while it runs: if a thread could
    # see the new process before its pools, it would send on the parent's socket.
    slow = requests.adapters.HTTPAdapter.init_poolmanager

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)
        slow(self, *args, **kwargs)

    requests.adapters.HTTPAdapter.init_poolmanager = slow_init  # type: ignore[method-assign]
    barrier = threading.Barrier(THREADS)
    wrong = []

    def one(n: int) -> None:
        mine = {"pid": os.getpid(), "n": n}
        barrier.wait(30)
        try:
            resp = client.request(
                target_service="billing", endpoint="/echo", method="POST", payload=mine
            )
            if json.loads(resp.json()["body"]) != mine:
                wrong.append(n)
        except Exception:
            wrong.append(n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return len(wrong) + sum(t.is_alive() for t in threads)


@pytest.mark.reliability
def test_threads_of_forked_children_never_share_the_parents_sockets(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """40 forked children, each with 8 threads making their first call at once (thread
    switches every microsecond), all get their own answers, and no request of a child
    ever arrives on the connection the parent had pooled (shared by every child)."""
    import threading
    import time as real_time

    ports: list[int] = []
    lock = threading.Lock()

    def echo_port(environ: dict[str, Any]) -> Any:
        with lock:
            ports.append(int(environ["REMOTE_PORT"]))
        return echo(environ)

    # waitress keeps connections alive, so the parent's stays pooled for children to inherit.
    server = WaitressServer(sealed(json_app(Recorder(), {"/echo": echo_port})), threads=16)
    with server:
        registry.register("billing", server.url)
        client = make_client(clock=real_time.monotonic, sleep=real_time.sleep, pool_maxsize=THREADS)
        assert client.request(target_service="billing", endpoint="/echo").status_code == 200
        assert client.request(target_service="billing", endpoint="/echo").status_code == 200
        inherited, again = ports
        assert inherited == again  # the connection is kept and reused
        failures = _fork_children(client)
    assert failures == 0
    assert len(ports) == 2 + CHILDREN * THREADS
    assert ports.count(inherited) == 2  # the parent's own calls, never a child's


def _fork_children(client: Any) -> int:
    """Fork CHILDREN children, AT_ONCE at a time, each making THREADS first calls; sum failures."""
    failures = 0
    for start in range(0, CHILDREN, AT_ONCE):
        pids = []
        for _ in range(start, min(start + AT_ONCE, CHILDREN)):
            pid = os.fork()
            if pid == 0:  # the child: report through the exit status only
                code = 99
                try:
                    code = min(_child_calls(client), 98)
                finally:
                    os._exit(code)
            pids.append(pid)
        deadline = time.monotonic() + 120
        for pid in pids:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failures += os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    pytest.fail("a child did not finish")
                time.sleep(0.01)
    return failures


def test_a_rebuild_is_published_whole_and_once() -> None:
    """When a fork bypassed the hook, threads arriving together all wait for one rebuild
    and get the new value: none gets the parent's, none a second one."""
    import threading

    from mscomm_sync.forking import PerProcess

    built: list[object] = []

    def build() -> object:
        time.sleep(0.05)  # slow enough for every thread to arrive while it runs
        value = object()
        built.append(value)
        return value

    shared = PerProcess(build)
    parents = shared.get()
    shared._current = (-1, parents)  # as in a child whose fork hook did not run
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(shared.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(built) == 2  # the parent's, and one rebuild
    assert seen == [built[1]] * 8
