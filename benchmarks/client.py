"""End-to-end round trips: plain requests.Session vs MicroServiceClient.

One Flask handler echoes the request body (``benchmarks/echo_app.py``):
plaintext requests reach it directly, sealed requests reach it through
EncryptionMiddleware (with its default host-wide replay store). Three
contenders each keep one keep-alive connection to a server of their own:

* **plain**: a ``requests.Session``, the baseline;
* **ours**: a ``MicroServiceClient``;
* **presealed**: a ``requests.Session`` sending requests sealed before its
  clock starts, which splits what we add into the server's share
  (middleware, envelope headers) and the client's.

Every contender runs in a process of its own (``benchmarks/contender.py``),
with its own server, so that one contender's memory use cannot move another's
page faults. Their calls still alternate one by one, so the machine's drift
falls on all three alike. Each size reports the median (p50) of each side,
their ratio and the microseconds the client, the envelope and the middleware
add together. The bar is a ratio of at most 1.10 at every size; the goal 1.05.

It runs twice, on two real servers on 127.0.0.1:

* waitress, in the contender's process (one CPU for client and server:
  every microsecond of either side shows);
* gunicorn with one ``gthread`` worker, in its own process (what our users
  run; client and server work on two cores).

werkzeug's development server closes every connection, so it cannot show
keep-alive.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from mscomm_sync.keyring import env_var_name, generate_key

from .contender import KINDS

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


@contextlib.contextmanager
def _contenders(server: str, env: dict[str, str]) -> Iterator[list[Contender]]:
    started: list[Contender] = []
    try:
        for kind in KINDS:
            started.append(Contender(kind, server, env))
        yield started
    finally:
        for contender in started:
            contender.stop()


def _p50s(contenders: list[Contender], size: int, number: int) -> list[float]:
    """Alternate the contenders call by call; return each one's median seconds."""
    for _ in range(WARMUP):
        for contender in contenders:
            contender.call(size)
    samples: list[list[float]] = [[] for _ in contenders]
    for _ in range(number):
        for i, contender in enumerate(contenders):
            samples[i].append(contender.call(size))
    return [statistics.median(s) for s in samples]


def main() -> None:
    """Run the comparison at 1 KiB, 64 KiB and 1 MiB on both servers; print p50s and ratios."""
    env = dict(os.environ)
    for name in ("orders", "billing"):
        env[env_var_name(name)] = generate_key()
    worst = 0.0
    for server, title in (
        ("waitress", "waitress, in each contender's process"),
        ("gunicorn", "gunicorn gthread, its own process"),
    ):
        print(f"\n{title}:")
        print(
            f"{'size':>7} {'Session p50':>12} {'client p50':>11} {'ratio':>6} {'added':>8}"
            f" {'server+wire':>12} {'client':>8}  (bar {BAR}, goal {GOAL})"
        )
        with _contenders(server, env) as contenders:
            for size, label, number in SIZES:
                t_plain, t_ours, t_pre = _p50s(contenders, size, number)
                ratio = t_ours / t_plain
                worst = max(worst, ratio)
                verdict = "ok" if ratio <= BAR else "OVER BAR"
                print(
                    f"{label:>7} {t_plain * 1e6:>10.0f}us {t_ours * 1e6:>9.0f}us {ratio:>6.3f}"
                    f" {(t_ours - t_plain) * 1e6:>+6.0f}us {(t_pre - t_plain) * 1e6:>+10.0f}us"
                    f" {(t_ours - t_pre) * 1e6:>+6.0f}us  {verdict}",
                    flush=True,
                )
    print(f"\nworst ratio {worst:.3f} (bar {BAR}, goal {GOAL})")
    print(
        "server+wire: a plain Session sending pre-sealed requests, minus plain (the "
        "middleware and envelope headers);\nclient: MicroServiceClient minus that "
        "(sealing, opening and the call loop, net of the Session machinery it skips)."
    )


if __name__ == "__main__":
    main()
