"""The ``nnet`` command line: one subcommand per job.

Every problem a user can cause ends with one line ``nnet: error: ...`` and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from nnet import __version__
from nnet.activations import ACTIVATIONS
from nnet.engines import ENGINES
from nnet.errors import NnetError
from nnet.loss import LOSSES
from nnet.network import DTYPES, Network, check_sizes

# ----------------------------------------------------------------------------- arg types


def sizes_arg(text: str) -> list[int]:
    """'784,16,16,10' or '784-16-16-10' -> [784, 16, 16, 10]."""
    parts = text.replace("-", ",").split(",")
    try:
        return check_sizes([int(p) for p in parts])
    except (ValueError, NnetError) as exc:
        msg = str(exc) if isinstance(exc, NnetError) else f"not a list of integers: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def names_arg(known: Sequence[str], what: str):
    """A type for 'name' or 'name,name,...' where every name is in ``known``."""

    def parse(text: str) -> list[str]:
        names = text.split(",")
        for n in names:
            if n not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {n!r}: expected one of {', '.join(known)}"
                )
        return names

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def one_or_list(names: list[str]) -> str | list[str]:
    return names[0] if len(names) == 1 else names


# ----------------------------------------------------------------------------- gradcheck


def add_gradcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check every engine's gradient against finite differences",
        description=(
            "Build a random network, compute the gradient of the batch mean of E with each "
            "engine, and print each engine's maximum relative error against central finite "
            "differences and against the first engine."
        ),
    )
    p.add_argument("--sizes", type=sizes_arg, default=[784, 16, 16, 10], help="e.g. 784,16,16,10")
    p.add_argument(
        "--activation",
        type=names_arg(list(ACTIVATIONS), "activation"),
        default=["sigmoid"],
        help="one name, or one per layer 1..L separated by commas",
    )
    p.add_argument("--loss", choices=list(LOSSES), default="mse")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--batch", type=positive_int, default=2, help="samples in the batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--engines",
        type=names_arg(list(ENGINES), "engine"),
        default=list(ENGINES),
        help="engines to check, separated by commas (default: all)",
    )
    p.add_argument(
        "--method",
        choices=["auto", "full", "directional"],
        default="auto",
        help="finite differences on every weight (full), along random directions, or "
        "full up to 20000 weights (auto)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_gradcheck)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from nnet.engines import gradients
    from nnet.gradcheck import check_engines

    rng = np.random.default_rng(args.seed)
    net = Network(
        args.sizes,
        one_or_list(args.activation),
        loss=args.loss,
        seed=rng,
        dtype=args.dtype,
    )
    x = rng.random((args.batch, args.sizes[0]))
    t = np.eye(args.sizes[-1])[rng.integers(0, args.sizes[-1], args.batch)]
    full = args.method == "full" or (args.method == "auto" and net.n_params <= 20000)
    seconds = {}
    for e in args.engines:
        start = time.perf_counter()
        gradients(net, x, t, engine=e)
        seconds[e] = time.perf_counter() - start
    report = check_engines(net, x, t, engines=args.engines, full=full, rng=rng)
    tol = 1e-6 if net.dtype == np.float64 else 1e-2
    ok = all(v <= tol for v in report["fd"].values())
    if args.json:
        print(json.dumps({**report, "seconds": seconds, "tolerance": tol, "ok": ok}))
        return 0 if ok else 1
    sizes = "-".join(map(str, net.sizes))
    print(
        f"gradcheck: {sizes}, {','.join(dict.fromkeys(net.activations))}, loss {net.loss.name}, "
        f"{net.dtype.name}, batch {args.batch}, seed {args.seed}; "
        f"{report['method']} central differences over {net.n_params} weights"
    )
    first = args.engines[0]
    print(
        f"{'engine':<10}  {'rel. error vs FD':>16}  {'rel. diff vs ' + first:>22}  {'seconds':>8}"
    )
    for e in args.engines:
        print(
            f"{e:<10}  {report['fd'][e]:>16.2e}  {report['agreement'][e]:>22.2e}  "
            f"{seconds[e]:>8.4f}"
        )
    verdict = "PASS: every engine is" if ok else "FAIL: some engine is not"
    print(f"{verdict} within {tol:g} of finite differences")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnet",
        description="A feedforward network from first principles in NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"nnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_gradcheck(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NnetError as exc:
        print(f"nnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnet: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
