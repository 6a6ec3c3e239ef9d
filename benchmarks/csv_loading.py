"""How fast nnet reads a numeric CSV, against numpy.loadtxt on the same file, and in what memory.

    python benchmarks/csv_loading.py [--rows 100000] [--cols 100] [--repeat 3] [--format repr]

Writes ROWS x COLS random floats (standard normal: signs, and 1 in 10 scaled by 10^-6 so
that exponents appear) under a header, plus an integer ``label`` column (0..9), to a
temporary folder (or ``--dir``). Then, best of ``--repeat`` each, the wall-clock seconds of
``read_table(path, target="label")`` and of ``numpy.loadtxt(path, delimiter=",",
skiprows=1)``; their ratio (below 1: read_table is faster); and the peak memory each
allocates while reading (tracemalloc, which NumPy reports to), relative to the data's size,
N x F x 8 bytes. ``--format`` is ``repr`` (shortest exact, as Python and pandas write) or a
%-format such as ``%.6f`` or ``%.18e`` (numpy.savetxt's default).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nnet.data.tables import read_table


def write_csv(path: Path, rows: int, cols: int, fmt: str, seed: int = 0) -> np.ndarray:
    """The CSV described above; returns the features as written (parsed back exactly)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, cols))  # noqa: N806
    X[rng.random((rows, cols)) < 0.1] *= 1e-6
    labels = rng.integers(0, 10, rows)
    text = repr if fmt == "repr" else fmt.__mod__
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(cols)] + ["label"]) + "\n")
        for row, t in zip(X.tolist(), labels.tolist(), strict=True):
            f.write(",".join(map(text, row)) + f",{t}\n")
    return X


def best_seconds(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(folder: Path, rows: int, cols: int, repeat: int, fmt: str) -> None:
    path = folder / "table.csv"
    t0 = time.perf_counter()
    write_csv(path, rows, cols, fmt)
    data = rows * cols * 8
    print(
        f"file: {rows} rows x {cols + 1} columns ({fmt}), {path.stat().st_size / 1e6:.1f} MB, "
        f"written in {time.perf_counter() - t0:.1f} s; the features as float64: {data / 1e6:.1f} MB"
    )

    def ours():
        return read_table(path, target="label")

    def numpy_loadtxt():
        return np.loadtxt(path, delimiter=",", skiprows=1)

    t_ref, ref = best_seconds(numpy_loadtxt, repeat)
    t_ours, table = best_seconds(ours, repeat)
    same = np.array_equal(table.X, ref[:, :-1]) and np.array_equal(
        np.asarray(table.classes)[table.y], ref[:, -1]
    )
    if not same:
        raise SystemExit("read_table and numpy.loadtxt disagree on this file")
    print("read_table's table is identical to numpy.loadtxt's")
    del ref, table
    print(f"numpy.loadtxt  best of {repeat}: {t_ref:.3f} s")
    print(f"read_table     best of {repeat}: {t_ours:.3f} s")
    print(f"speed ratio (read_table / loadtxt): {t_ours / t_ref:.2f}")
    for name, fn in (("read_table", ours), ("numpy.loadtxt", numpy_loadtxt)):
        peak = peak_bytes(fn)
        print(f"peak memory {name}: {peak / 1e6:.1f} MB = {peak / data:.2f} x the data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", default="repr", help="repr, or a %%-format such as %%.6f")
    ap.add_argument(
        "--dir", type=Path, help="where to write the file (default: a temporary folder)"
    )
    args = ap.parse_args()
    if args.dir is not None:
        run(args.dir, args.rows, args.cols, args.repeat, args.format)
        return
    with tempfile.TemporaryDirectory() as folder:
        run(Path(folder), args.rows, args.cols, args.repeat, args.format)


if __name__ == "__main__":
    main()
