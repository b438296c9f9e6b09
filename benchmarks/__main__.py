"""Run every ``bench_*`` module's ``main()``, or only those named on the command line.

Examples: ``python -m benchmarks`` (all), ``python -m benchmarks embedded_bus store``.
Each benchmark runs with its defaults; run a module directly to pass options.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def _available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(here)])
        if info.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    known = _available()
    wanted = [name.removeprefix("bench_") for name in names] or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(known)}")
        return 2
    failed = []
    for name in wanted:
        print(f"== bench_{name} ==", flush=True)
        started = time.monotonic()
        saved, sys.argv = sys.argv, [f"bench_{name}"]  # each main() parses its own defaults
        try:
            importlib.import_module(f"benchmarks.bench_{name}").main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"bench_{name} failed: {type(exc).__name__}: {exc}")
            failed.append(name)
        finally:
            sys.argv = saved
        print(f"== bench_{name} took {time.monotonic() - started:.0f} s ==\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
