"""End-to-end round trips: plain requests.Session vs MicroServiceClient.

One Flask handler echoes the request body (``benchmarks/echo_app.py``):
plaintext requests reach it directly, sealed requests reach it through
EncryptionMiddleware (with its default host-wide replay store). Three
contenders each keep one keep-alive connection:

* **plain**: a ``requests.Session``, the baseline;
* **ours**: a ``MicroServiceClient``;
* **presealed**: a ``requests.Session`` sending requests sealed before its
  clock starts, which splits what we add into the server's share
  (middleware, envelope headers) and the client's.

Their calls alternate one by one, so the machine's drift falls on all three
alike. Each size reports the median (p50) of each side, their ratio and the
microseconds the client, the envelope and the middleware add together. The
bar is a ratio of at most 1.10 at every size; the goal 1.05.

Each server is measured in two arrangements:

* **shared**, as the issue asks: one server for all three contenders, and
  the contenders in this process;
* **isolated**: each contender in a process of its own
  (``benchmarks/contender.py``) with a server of its own, so that one
  contender's memory use cannot move another's page faults (glibc hands
  freed memory back to the kernel depending on everything else the process
  allocated). Each call starts in a process that has just woken up, which
  adds about half a millisecond to both sides alike; read the added
  microseconds beside the ratio.

The two servers, on 127.0.0.1:

* waitress, in the client's process (one CPU for client and server: every
  microsecond of either side shows);
* gunicorn with one ``gthread`` worker, in its own process (what our users
  run; client and server work on two cores).

With two CPUs or more, the clients run on one and gunicorn on another
(``sched_setaffinity``), for both contenders alike: the scheduler then never
moves a process between cores in the middle of a call, which was a large
source of spread between runs here.

werkzeug's development server closes every connection, so it cannot show
keep-alive.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from mscomm_sync.keyring import Keyring, env_var_name, generate_key

from .contender import KINDS, SERVER_CPU_ENV, caller, server_for

SIZES = ((1024, "1 KiB", 800), (64 * 1024, "64 KiB", 500), (1024 * 1024, "1 MiB", 150))
WARMUP = 10
BAR = 1.10
GOAL = 1.05


class Contender:
    """A contender's process: one line out (a size), one line back (seconds)."""

    def __init__(self, kind: str, server: str, env: dict[str, str]) -> None:
        root = Path(__file__).resolve().parent.parent
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.contender", kind, server],
            cwd=str(root),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line or (what and line != what):
            raise RuntimeError(
                f"contender {self.kind} answered {line!r}, exited {self.proc.poll()}"
            )
        return line

    def call(self, size: int) -> float:
        """Have the contender make one call of ``size`` bytes; return its seconds."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{size}\n")
        self.proc.stdin.flush()
        return float(self._expect(""))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


Calls = list[Callable[[int], float]]


@contextlib.contextmanager
def _isolated(server: str, env: dict[str, str]) -> Iterator[Calls]:
    started: list[Contender] = []
    try:
        for kind in KINDS:
            started.append(Contender(kind, server, env))
        yield [contender.call for contender in started]
    finally:
        for contender in started:
            contender.stop()


@contextlib.contextmanager
def _shared(server: str, env: dict[str, str]) -> Iterator[Calls]:
    keyring = Keyring(env)
    gc_was = gc.isenabled()
    gc.disable()  # a collection inside one timed call is noise
    try:
        with contextlib.ExitStack() as stack:
            base = stack.enter_context(server_for(server, keyring, env))
            yield [caller(kind, base, keyring, stack) for kind in KINDS]
    finally:
        if gc_was:
            gc.enable()


def _p50s(calls: Calls, size: int, number: int) -> list[float]:
    """Alternate the contenders call by call; return each one's median seconds."""
    for _ in range(WARMUP):
        for call in calls:
            call(size)
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(number):
        for i, call in enumerate(calls):
            samples[i].append(call(size))
    return [statistics.median(s) for s in samples]


def main() -> None:
    """Run the comparison at 1 KiB, 64 KiB and 1 MiB, each server both ways; print the tables."""
    if os.environ.get("PIN"):
        os.sched_setaffinity(0, {0})
    env = dict(os.environ)
    for name in ("orders", "billing"):
        env[env_var_name(name)] = generate_key()
    _pin(env)
    worst = 0.0
    for server, where in (
        ("waitress", "in the client's process"),
        ("gunicorn", "gthread, its own process"),
    ):
        for arrangement, contenders in (("shared", _shared), ("isolated", _isolated)):
            print(f"\n{server} ({where}), {arrangement}:")
            print(
                f"{'size':>7} {'Session p50':>12} {'client p50':>11} {'ratio':>6} {'added':>8}"
                f" {'server+wire':>12} {'client':>8}  (bar {BAR}, goal {GOAL})"
            )
            with contenders(server, env) as calls:
                for size, label, number in SIZES:
                    worst = max(worst, _row(calls, size, label, number))
    print(f"\nworst ratio {worst:.3f} (bar {BAR}, goal {GOAL})")
    print(
        "server+wire: a plain Session sending pre-sealed requests, minus plain (the "
        "middleware and envelope headers);\nclient: MicroServiceClient minus that "
        "(sealing, opening and the call loop, net of the Session machinery it skips)."
    )


def _pin(env: dict[str, str]) -> None:
    """Keep the clients on one CPU and gunicorn on another, when there are two."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    os.sched_setaffinity(0, {cpus[0]})  # the contenders' processes inherit it
    env[SERVER_CPU_ENV] = str(cpus[1])
    print(f"clients on CPU {cpus[0]}, gunicorn on CPU {cpus[1]}")


def _row(calls: Calls, size: int, label: str, number: int) -> float:
    """Print one size's line; return its ratio."""
    t_plain, t_ours, t_pre = _p50s(calls, size, number)
    ratio = t_ours / t_plain
    verdict = "ok" if ratio <= BAR else "OVER BAR"
    print(
        f"{label:>7} {t_plain * 1e6:>10.0f}us {t_ours * 1e6:>9.0f}us {ratio:>6.3f}"
        f" {(t_ours - t_plain) * 1e6:>+6.0f}us {(t_pre - t_plain) * 1e6:>+10.0f}us"
        f" {(t_ours - t_pre) * 1e6:>+6.0f}us  {verdict}",
        flush=True,
    )
    return ratio


if __name__ == "__main__":
    main()
