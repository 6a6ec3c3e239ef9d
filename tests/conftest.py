"""Shared fixtures: where the real MNIST is, and small helpers on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nnet.data.datasets import FILES, locate  # noqa: E402
from nnet.training.threads import usable_cores  # noqa: E402

# The thread count decides the last bits of some matrix products (nnet.training.threads),
# and --threads auto chooses it from the load of the machine: the tests compute with every
# core, fixed, so that two runs compared bit for bit (and the README's curve, measured with
# every core of a 2-core machine) do not depend on what else runs. Tests of auto unset it.
os.environ.setdefault("NNET_THREADS", str(usable_cores()))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The data directory that holds the real MNIST: $NNET_DATA, else ../shared/data.

    With NNET_DATA set (as in CI), a missing MNIST fails the test; without it, tests that
    need the real data are skipped when ../shared/data does not hold it either.
    """
    env = os.environ.get("NNET_DATA")
    if env:
        d = Path(env)
        missing = [f for f in FILES if not (d / "mnist" / f).exists()]
        missing = [f for f in missing if not (d / "mnist" / f.removesuffix(".gz")).exists()]
        assert not missing, f"NNET_DATA={env} does not hold mnist/ ({missing} missing)"
        return d
    d = Path(__file__).resolve().parents[2] / "shared" / "data"
    if locate("mnist", d) != d / "mnist":
        pytest.skip(f"no real MNIST: NNET_DATA is unset and {d}/mnist is incomplete")
    return d
