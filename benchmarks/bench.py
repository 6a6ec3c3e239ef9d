"""Script form of ``nnet bench``: every engine, PyTorch and the GEMM, side by side.

    python benchmarks/bench.py            # the table and the ratios
    python benchmarks/bench.py --json     # a JSON list of rows

Takes the same flags as ``nnet bench`` (see ``nnet bench --help``).
"""

from __future__ import annotations

import sys

from nnet.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
