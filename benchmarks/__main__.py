"""Run every benchmark module (or those named on the command line) and record its metrics."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks
from benchmarks.results import SUMMARY, record


def main(argv: list[str]) -> int:
    names = argv or sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    failed = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            data = module.run()
        except Exception as exc:  # a broken benchmark must not hide the others' numbers
            print(f"   FAILED: {exc!r}", flush=True)
            failed.append(name)
            continue
        data.setdefault("wall_seconds", round(time.perf_counter() - started, 2))
        path = record(name.removeprefix("bench_"), data)
        print(f"   {data.get('metrics')}\n   -> {path}", flush=True)
    print(f"summary: {SUMMARY}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
