"""Print how long each lesson and assignment notebook takes to run top to bottom.

A student should wait seconds, not minutes.  This is a measurement, not a
test: it prints figures and exits 0.

    .venv/bin/python benchmarks/bench_notebooks.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from coursekit import lesson_paths, source_notebooks  # noqa: E402


def run_once(path: Path) -> tuple[float, float]:
    """(seconds with kernel start and shutdown, seconds of cell execution only)."""
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel():
        t1 = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    return t3 - t0, t2 - t1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for path in lesson_paths() + source_notebooks():
        runs = [run_once(path) for _ in range(args.repeat)]
        total = statistics.median(r[0] for r in runs)
        cells = statistics.median(r[1] for r in runs)
        rows.append((str(path.relative_to(ROOT)), total, cells))
    width = max(len(r[0]) for r in rows)
    print(f"{'notebook':<{width}}  {'total s':>8}  {'cells s':>8}   (median of {args.repeat} runs)")
    for name, total, cells in rows:
        print(f"{name:<{width}}  {total:8.2f}  {cells:8.2f}")
    print(f"{'slowest':<{width}}  {max(r[1] for r in rows):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
