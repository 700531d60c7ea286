"""Run the benchmarks and print a table: name, measured figure, goal, verdict.

Each ``bench_*.py`` module exposes ``run() -> list[Result]``. Select with ``python -m tests.bench
NAME...`` (module name fragments).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

from tests.bench.common import Result


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    results: list[Result] = []
    for name in names:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        results.extend(module.run())
        print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    width = max((len(r.name) for r in results), default=10)
    print()
    print(f"{'benchmark':<{width}}  {'measured':>16}  {'goal':>16}  verdict")
    print(f"{'-' * width}  {'-' * 16}  {'-' * 16}  -------")
    for r in results:
        print(f"{r.name:<{width}}  {r.measured:>16}  {r.goal:>16}  {r.verdict}")
    for r in results:
        if r.note:
            print(f"  {r.name}: {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
