"""Which element-wise kernels run: the fused, compiled ones of :mod:`nnet.kernels`, or NumPy's.

The NumPy code of each step (the optimizers' updates, the activations of the forward pass,
backpropagation's step through them, the dropout masks) is the reference and what runs
without Numba; :mod:`nnet.kernels` holds the same operations fused into one compiled loop.
This module chooses between the two without importing Numba, so nothing compiled is loaded
until a step first asks for it:

- ``"auto"`` (the default): the fused kernels when Numba loads, otherwise the NumPy ones and
  one notice line on stderr, once per process;
- ``"numba"``: the fused kernels, or a one-line NnetError where Numba cannot be loaded;
- ``"numpy"``: the reference.

None means ``$NNET_KERNELS``, else ``"auto"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from nnet.errors import NnetError

KERNELS = ("auto", "numba", "numpy")
NOTICE = (
    "nnet: Numba is not installed; the NumPy kernels run "
    "(pip install 'nnet[fast]' for the fused ones)."
)
# What loading nnet.kernels gave ("module" or "reason"), and whether the notice
# was printed: once per process.
_FUSED: dict[str, object] = {}


def check_kernels(kernels: str | None = None) -> str:
    """The kernels asked for: ``kernels``, else ``$NNET_KERNELS``, else ``"auto"``; checked.

    ``"numba"`` without Numba installed is an NnetError here, before anything runs.
    """
    source = "kernels"
    if kernels is None:
        kernels = os.environ.get("NNET_KERNELS", "").strip().lower() or "auto"
        source = "NNET_KERNELS"
    if kernels not in KERNELS:
        raise NnetError(f"{source} must be one of {', '.join(KERNELS)}; got {kernels!r}.")
    if kernels == "numba" and "module" not in _FUSED and importlib.util.find_spec("numba") is None:
        raise NnetError(
            f"{source}=numba asks for the fused kernels, but Numba is not installed: "
            "pip install 'nnet[fast]', or use the NumPy kernels."
        )
    return kernels


def fused_kernels(kernels: str) -> ModuleType | None:
    """The module of fused kernels for a (checked) request, or None for the NumPy ones.

    ``"auto"`` prints :data:`NOTICE` (or why Numba did not load) on stderr the first time
    in the process that it falls back; ``"numba"`` raises an NnetError instead.
    """
    if kernels == "numpy":
        return None
    if not _FUSED:
        try:
            _FUSED["module"] = importlib.import_module("nnet.kernels")
        except ImportError as exc:  # not installed, or installed but unusable
            if isinstance(exc, ModuleNotFoundError) and exc.name in ("numba", "llvmlite"):
                _FUSED["reason"] = "Numba is not installed"
            else:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                _FUSED["reason"] = f"Numba could not be loaded ({first})"
    module = _FUSED.get("module")
    if module is not None:
        return module  # type: ignore[return-value]
    reason = _FUSED["reason"]
    if kernels == "numba":
        raise NnetError(f"the fused kernels cannot run: {reason}; pip install 'nnet[fast]'.")
    if not _FUSED.get("noticed"):
        _FUSED["noticed"] = True
        if reason == "Numba is not installed":
            print(NOTICE, file=sys.stderr)
        else:
            print(f"nnet: {reason}; the NumPy kernels run.", file=sys.stderr)
    return None
