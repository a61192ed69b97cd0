"""One client shared by 16 threads, over pooled keep-alive connections."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from mscomm_sync.registry import FileRegistry

from .servers import Recorder, WaitressServer, echo, json_app, sealed


def test_sixteen_threads_share_a_client(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """16 threads calling through one client all get their own answers, none lost."""
    recorder = Recorder()
    app = sealed(json_app(recorder, {"/echo": echo}))
    with WaitressServer(app) as first, WaitressServer(app) as second:
        registry.register("billing", first.url)
        registry.register("billing", second.url)
        client = make_client()
        errors: list[BaseException] = []
        start = threading.Barrier(16)

        def worker(n: int) -> None:
            try:
                start.wait(30)
                for i in range(10):
                    resp = client.request(
                        target_service="billing", endpoint="/echo", method="POST",
                        payload={"n": n, "i": i},
                    )  # fmt: skip
                    assert json.loads(resp.json()["body"]) == {"n": n, "i": i}
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        client.close()
    assert errors == []
    assert recorder.hits["/echo"] == 160
    balancer = client.get_adapter("mscomm://billing").balancer
    assert all(balancer.in_flight(i.url) == 0 for i in registry.get_instances("billing"))
