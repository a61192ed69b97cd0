"""Registry costs: resolution (file and etcd), reload after a change, a health sweep.

* Resolution with 10,000 instances across 1,000 services, file unchanged
  (target: under 5 us), beside a bare ``dict`` lookup measured in the same run.
* The first resolution just after another process changed the file (a reload).
* A health sweep of 1,000 instances against a local HTTP server with 32
  threads (target: inside a 5 s interval).
* etcd: cached resolution next to the file backend's, and a full refresh;
  needs ``/usr/bin/etcd`` (skipped with a note otherwise).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import requests

from mscomm_sync.registry import EtcdRegistry, FileRegistry, HealthCheckConfig, HealthPoller
from mscomm_sync.registry.base import make_instance
from mscomm_sync.registry.fileformat import encode
from mscomm_sync.testing import LiveServer

from .timing import interleaved

SERVICES = 1_000
PER_SERVICE = 10
SWEEP_INSTANCES = 1_000
SWEEP_THREADS = 32


def _names() -> list[str]:
    return [f"service-{n:04d}" for n in range(SERVICES)]


def _instances() -> list[Any]:
    return [
        make_instance(name, f"http://10.0.{n // 250}.{n % 250}:{8000 + i}")
        for n, name in enumerate(_names())
        for i in range(PER_SERVICE)
    ]


def _lookup_loop(registry: Any, names: list[str]) -> Any:
    cycle: Iterator[str] = iter(())

    def lookup() -> None:
        nonlocal cycle
        name = next(cycle, None)
        if name is None:
            cycle = iter(names)
            name = next(cycle)
        registry.get_instances(name)

    return lookup


def bench_file(workdir: str) -> float:
    """Print file-backend resolution figures; return us per cached resolution."""
    path = os.path.join(workdir, "registry.json")
    instances = _instances()
    with open(path, "wb") as f:
        f.write(encode(instances))
    names = _names()
    baseline: dict[str, list[Any]] = {}
    for inst in instances:
        baseline.setdefault(inst.service, []).append(inst)

    with FileRegistry(path) as reader, FileRegistry(path) as writer:
        ours = _lookup_loop(reader, names)
        bare = _lookup_loop(
            type("Bare", (), {"get_instances": lambda s, n: list(baseline.get(n, ()))})(), names
        )
        t_bare, t_ours = interleaved([bare, ours], number=50_000, rounds=7)
        verdict = "ok" if t_ours < 5e-6 else "MISS"
        print(f"file registry, {len(instances):,} instances / {SERVICES:,} services")
        print(f"  resolution, file unchanged: {t_ours * 1e6:6.2f} us  (target < 5 us: {verdict})")
        ratio = t_ours / t_bare
        print(f"  bare dict lookup + copy:    {t_bare * 1e6:6.2f} us  (ours / bare = {ratio:.1f}x)")

        writes, reloads = [], []
        for n in range(7):
            start = time.perf_counter()
            writer.register("service-0000", f"http://10.9.9.9:{9000 + n}")
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            reader.get_instances("service-0000")
            reloads.append(time.perf_counter() - start)
        reload_ms = statistics.median(reloads) * 1e3
        write_ms = statistics.median(writes) * 1e3
        print(f"  first resolution after a change (reload): {reload_ms:6.1f} ms")
        print(f"  one registration (lock, read, write, fsync, replace): {write_ms:6.1f} ms")
    return t_ours * 1e6


def bench_sweep() -> None:
    """Print how long one health sweep of 1,000 instances takes with 32 threads."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    with LiveServer(app) as live:
        targets = [
            make_instance(f"svc-{n:04d}", f"{live.url}/i/{n}") for n in range(SWEEP_INSTANCES)
        ]
        config = HealthCheckConfig(interval=5.0, timeout=5.0, max_workers=SWEEP_THREADS)
        poller = HealthPoller(lambda: targets, config=config)
        try:
            poller.poll_once()  # warm: connections and threads
            seconds = []
            for _ in range(3):
                verdicts = poller.poll_once()
                assert poller.last_sweep_seconds is not None
                seconds.append(poller.last_sweep_seconds)
        finally:
            poller.stop()
    healthy = sum(verdicts.values())
    best = min(seconds)
    verdict = "ok" if max(seconds) < config.interval else "MISS"
    print(f"health sweep, {SWEEP_INSTANCES:,} instances, {SWEEP_THREADS} threads, one local server")
    print(
        f"  sweep: best {best:5.2f} s, worst {max(seconds):5.2f} s, {healthy} healthy "
        f"({SWEEP_INSTANCES / best:,.0f} probes/s; target < {config.interval:g} s: {verdict})"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _etcd(workdir: str) -> Iterator[Optional[str]]:
    binary = "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else shutil.which("etcd")
    if binary is None:
        yield None
        return
    client, peer = _free_port(), _free_port()
    url = f"http://127.0.0.1:{client}"
    argv = [
        binary, "--name", "bench", "--data-dir", os.path.join(workdir, "etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--log-level", "error",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/health", timeout=1).json().get("health") == "true":
                    break
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def bench_etcd(workdir: str, file_us: float) -> None:
    """Print etcd cached resolution beside the file backend's, and a full refresh."""
    with _etcd(workdir) as url:
        if url is None:
            print("etcd: skipped (/usr/bin/etcd not installed; install Debian's etcd-server)")
            return

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        instances = _instances()
        with requests.Session() as session:
            for first in range(0, len(instances), 100):  # etcd allows 128 ops per txn
                ops = [
                    {"request_put": {"key": b64(f"/bench/services/{i.service}/{i.url}"),
                                     "value": b64(json.dumps({"url": i.url}))}}
                    for i in instances[first : first + 100]
                ]  # fmt: skip
                session.post(
                    url + "/v3/kv/txn", json={"success": ops}, timeout=30
                ).raise_for_status()
        names = _names()
        with EtcdRegistry([url], prefix="/bench", refresh_interval=3600) as registry:
            assert len(registry.instances()) == len(instances)
            path = os.path.join(workdir, "registry.json")
            with FileRegistry(path) as file_registry:
                t_file, t_etcd = interleaved(
                    [_lookup_loop(file_registry, names), _lookup_loop(registry, names)],
                    number=50_000,
                    rounds=7,
                )
            refreshes = []
            for n in range(5):
                registry.register("service-0000", f"http://10.9.9.9:{9100 + n}")
                registry._revision = None  # force a full read, as after another writer
                start = time.perf_counter()
                registry.refresh()
                refreshes.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(20):
                registry.refresh()
            unchanged = (time.perf_counter() - start) / 20
        print(f"etcd registry (JSON gateway), {len(instances):,} instances, cached lookups")
        print(
            f"  resolution, cached:   {t_etcd * 1e6:6.2f} us   file backend: {t_file * 1e6:6.2f} us"
            f"   (etcd / file = {t_etcd / t_file:.2f}x; earlier file figure {file_us:.2f} us)"
        )
        print(f"  refresh, unchanged (one small range): {unchanged * 1e3:6.1f} ms")
        print(
            f"  refresh after a change (full range):  {statistics.median(refreshes) * 1e3:6.1f} ms"
        )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mscomm-bench-") as workdir:
        file_us = bench_file(workdir)
        bench_sweep()
        bench_etcd(workdir, file_us)


if __name__ == "__main__":
    main()
