"""Run every benchmark module, or the ones named on the command line."""

from __future__ import annotations

import importlib
import sys

MODULES = ("crypto", "middleware", "client", "versions", "registry", "telemetry")


def main(argv: list[str]) -> int:
    names = argv or list(MODULES)
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n=== benchmarks/{name}.py ===", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
