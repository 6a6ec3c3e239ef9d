"""Your own data in: a CSV table or a NumPy ``.npz`` file as a :class:`Table`; feature scaling.

:func:`read_table` reads a comma-separated file whose first line names the columns;
:func:`read_arrays` reads a ``.npz`` file holding ``X`` and ``y``. Both return a
:class:`Table`: ``X`` (float64, N x F), ``y`` and what it means. Pictures in class folders
are read by :mod:`nnet.data.folders`; :class:`Standardizer` is the feature scaling a model
file stores and evaluate, predict, serve and the ONNX export apply: x' = (x - mean) / scale.

The task
    A target of integers or strings (labels) is ``"classification"``: ``y`` holds class
    indices (int64) into ``classes``, the sorted distinct labels in their own type (``str``
    or ``int``). A target of floats (any value written with a point or an exponent) is
    ``"regression"``: ``y`` holds the values (float64). ``task=`` overrides the guess: a
    float target read for classification has float ``classes``; integers read for
    regression become floats; strings cannot be regression targets. Integers beyond int64,
    or mixed with words, are labels as strings.

The CSV rules
    The first line is the header: every column has a name, no two the same, and a line of
    numbers only is refused as a missing header. Every other column than the target holds
    numbers (Python's float syntax); with ``target=None`` (input to predict) every column
    does. Each row has one value per column. Blank lines are skipped. Standard CSV quoting
    (``"a, b"``) is understood. Text is UTF-8 (a byte order mark is allowed).

Missing values are refused, never guessed: an empty field, or (in any letter case, spaces
around ignored) ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` or ``?``, in a feature or the
target, stops reading with the row and column; so does an infinite number. The user fills
them in or deletes the row.

Where a problem is
    Every problem raises :class:`DataFileError` (an :class:`~nnet.errors.NnetError`), one
    line naming the file and, where they apply, the row and the column. Rows are numbered as
    a spreadsheet shows the file: the header is row 1 (with quoted fields spanning lines,
    the row is the line the record starts on). Columns are numbered from 1, and named.
    Arrays in ``.npz`` files are indexed from 0, as in NumPy: ``X[4, 2]``.

Limits
    ``MAX_ROWS``, ``MAX_COLUMNS`` and ``MAX_VALUES`` (rows x features, so ``X`` stays
    under 2 GB) are checked before the data is read into memory, ``MAX_CLASSES`` after.

Speed
    A CSV file is read in chunks of ``CHUNK`` bytes. Each chunk goes through a vectorized
    parser (:func:`_parse_numbers`): every number is split at its point and exponent into
    integer tokens, which ``np.fromstring`` reads far faster than floats, and rebuilt as
    mantissa x 10^exponent; mantissas of up to 2^53 with exponents up to 22 are exact in
    float64, longer ones are computed in 64-bit extended precision, where it exists, with
    the one double-rounding case (a result exactly halfway between two float64 values)
    handed to Python's ``float``; so every value is correctly rounded, identical to
    ``float(text)`` and ``np.loadtxt``. The target column is parsed with the rest when it is
    numeric, and cut off line by line when it holds labels. A chunk the fast path cannot
    take (quotes, spaces, a bad value) sends the whole file to the careful reader, the
    ``csv`` module row by row, which reads what is valid and names what is not. About twice
    as fast as ``np.loadtxt``, in ``X`` plus a few chunks of memory
    (``benchmarks/csv_loading.py`` measures both).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnet.errors import NnetError

MAX_ROWS = 10_000_000
MAX_COLUMNS = 100_000
MAX_VALUES = 250_000_000  # rows x features: X in float64 stays under 2 GB
MAX_CLASSES = 1_000
MAX_HEADER_BYTES = 16 << 20  # the first line, read before anything else is known
CHUNK = 1 << 20  # bytes of a CSV file parsed at a time (more is no faster)
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})  # lowercased, stripped
TASKS = ("classification", "regression")


class DataFileError(NnetError):
    """A data file the user gave is missing, unreadable, or holds something nnet cannot use."""


class _Retry(Exception):
    """The fast CSV path cannot take this file (or cannot say where a problem is)."""


@dataclass(frozen=True, eq=False)
class Table:
    """Data read from a file: features ``X`` and, when there is a target, ``y``.

    ``X`` is float64 (N, F), in the order of ``feature_names``. For ``task ==
    "classification"``, ``y`` is int64 indices into ``classes`` (the sorted distinct
    labels, ``str``, ``int`` or ``float`` as read); for ``"regression"`` it is the float64
    values and ``classes`` is empty. Without a target (input to predict) ``y``, ``target``
    and ``task`` are None.
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    target: str | None
    task: str | None
    classes: tuple = ()

    def __len__(self) -> int:
        return len(self.X)


# --- the target: labels or values --------------------------------------------------------


def _check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise NnetError(f"task must be 'classification', 'regression' or None, not {task!r}.")


@dataclass(frozen=True)
class _Where:
    """Where a target is, for messages: ``file, row 5, column 3 ('label')``."""

    path: Path
    column: int | None  # from 1; None: ``name`` is the whole place (an array's name)
    name: str

    def at(self, row: int | None = None) -> str:
        place = [str(self.path)] + ([f"row {row}"] if row is not None else [])
        col = self.name if self.column is None else f"column {self.column} ({self.name!r})"
        return ", ".join([*place, col])


def _encode(where: _Where, labels: np.ndarray | list) -> tuple[np.ndarray, tuple]:
    """(class indices, sorted distinct labels as Python values); at least two classes."""
    if isinstance(labels, np.ndarray):
        uniq, y = np.unique(labels, return_inverse=True)
        classes = tuple(v.item() for v in uniq)
        y = y.astype(np.int64).reshape(-1)
    else:
        classes = tuple(sorted(set(labels)))
        index = {c: i for i, c in enumerate(classes)}
        y = np.fromiter(map(index.__getitem__, labels), np.int64, count=len(labels))
    if len(classes) < 2:
        raise DataFileError(
            f"{where.at()} holds one class only ({classes[0]!r}); classification needs at "
            f"least two (for a quantity to predict, use task 'regression')."
        )
    if len(classes) > MAX_CLASSES:
        raise DataFileError(
            f"{where.at()} holds {len(classes)} distinct labels, more than the {MAX_CLASSES} "
            f"classes nnet accepts; if it is a quantity to predict, use task 'regression'."
        )
    return y, classes


def _numbers_target(
    where: _Where, values: np.ndarray, ints: np.ndarray | None, task: str | None
) -> tuple[np.ndarray, tuple, str]:
    """(y, classes, task) of a numeric target; ``ints`` when every value is an integer."""
    if task is None:
        task = "regression" if ints is None else "classification"
    if task == "regression":
        return values.astype(np.float64), (), task
    y, classes = _encode(where, values if ints is None else ints)
    return y, classes, task


def _texts_target(
    where: _Where, texts: list[str], lines: np.ndarray | None, task: str | None
) -> tuple[np.ndarray, tuple, str]:
    """(y, classes, task) of a target read as text (stripped): ``texts[i]`` from ``lines[i]``.

    Integers are labels, other numbers values, anything else labels. Without ``lines`` (the
    fast path), a problem to be named by its row raises _Retry.
    """

    def at(i: int) -> str:
        if lines is None:
            raise _Retry
        return where.at(int(lines[i]))

    for i, t in enumerate(texts):
        if t.lower() in MISSING:
            raise DataFileError(
                f"{at(i)}: the target is missing ({repr(t) if t else 'empty'}); nnet does not "
                f"guess missing values: fill it in or delete the row."
            )
    try:
        ints = [int(t) for t in texts]
    except ValueError:
        ints = None
    if ints is not None:
        try:
            values = np.array(ints, dtype=np.int64)
        except OverflowError:  # integers beyond int64 are names, not numbers
            return (*_encode(where, texts), "classification")
        return _numbers_target(where, values.astype(np.float64), values, task)
    try:
        values = np.array([float(t) for t in texts], dtype=np.float64)
    except ValueError:
        if task == "regression":
            i = next(i for i, t in enumerate(texts) if not _is_float(t))
            raise DataFileError(
                f"{at(i)}: {texts[i]!r} is not a number, and regression needs numbers; for "
                f"labels use task 'classification'."
            ) from None
        return (*_encode(where, texts), "classification")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise DataFileError(f"{at(i)}: {texts[i]!r} is not a finite number.")
    return _numbers_target(where, values, None, task)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- CSV: the header -----------------------------------------------------------------------


def _open_error(path: Path, e: OSError) -> DataFileError:
    if isinstance(e, FileNotFoundError):
        return DataFileError(f"{path} does not exist; check the path.")
    if isinstance(e, IsADirectoryError):
        return DataFileError(f"{path} is a folder, not a file.")
    return DataFileError(f"{path} cannot be read: {e.strerror or e}.")


def _decode(path: Path, data: bytes, row: int | str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError(
            f"{path}, row {row}: the text is not UTF-8; save the file as UTF-8 CSV."
        ) from None


def _check_header(path: Path, names: list[str], target: str | None) -> int | None:
    """The target's column index (0-based), after checking every name; None without one."""
    if len(names) > MAX_COLUMNS:
        raise DataFileError(f"{path} has {len(names)} columns; nnet reads at most {MAX_COLUMNS}.")
    if all(_is_float(n) for n in names):
        raise DataFileError(
            f"{path}, row 1: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''} are "
            f"numbers, not column names; the first line must name the columns (add a header "
            f"line such as x1,x2,...,label)."
        )
    seen: dict[str, int] = {}
    for c, name in enumerate(names, 1):
        if not name:
            raise DataFileError(
                f"{path}, row 1, column {c}: the column has no name; every column needs one."
            )
        if name in seen:
            raise DataFileError(
                f"{path}, row 1: columns {seen[name]} and {c} are both named {name!r}; rename one."
            )
        seen[name] = c
    if target is None:
        return None
    if target not in seen:
        shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        hint = ""
        if len(names) == 1 and any(s in names[0] for s in ";\t|"):
            hint = " (it has one column: nnet reads comma-separated files)"
        raise DataFileError(
            f"{path}: no column named {target!r}; the header (row 1) names {shown}{hint}."
        )
    if len(names) == 1:
        raise DataFileError(
            f"{path}: {target!r} is the only column; there are no features to learn from."
        )
    return seen[target] - 1


def _header_fields(path: Path, line: bytes) -> list[str]:
    text = _decode(path, line.removeprefix(b"\xef\xbb\xbf"), 1).rstrip("\r\n")
    return [n.strip() for n in next(csv.reader([text]), [""])]


# --- CSV: the fast path ----------------------------------------------------------------------

_SEP, _NL, _DOT, _EXP = 1, 2, 3, 4
_KIND = np.zeros(256, np.uint8)
_KIND[[ord(","), ord("\n"), ord("."), ord("e"), ord("E")]] = [_SEP, _NL, _DOT, _EXP, _EXP]
_ALLOWED = b"0123456789+-.,eE\n"
_TO_COMMA = bytes.maketrans(b"\n.eE", b",,,,")
_I64 = np.iinfo(np.int64)
_P10F = np.array([float(10**k) for k in range(23)])  # exact in float64
_P10U = np.array([10**k for k in range(20)], dtype=np.uint64)


def _extended_powers() -> np.ndarray | None:
    """10**0 .. 10**27 in long double when it has a 64-bit mantissa (x86), else None."""
    if np.finfo(np.longdouble).nmant < 63:
        return None
    p = np.ones(28, dtype=np.longdouble)
    for k in range(1, 28):
        p[k] = p[k - 1] * 10
    return p if all(int(p[k]) == 10**k for k in range(28)) else None


def _x87_layout() -> bool:
    """Whether a long double is x87's: 16 bytes, little-endian, the 64-bit mantissa first."""
    x = np.array([1.0, 1.5], dtype=np.longdouble)
    if x.itemsize != 16 or np.finfo(np.longdouble).nmant != 63:
        return False
    return x.view(np.uint64)[::2].tolist() == [1 << 63, 3 << 62]


_P10L = _extended_powers()
_X87 = _P10L is not None and _x87_layout()


def _parse_numbers(body: bytes, nrows: int, ncols: int) -> tuple[np.ndarray, ...] | None:
    """``body`` (rows split by ``\\n``, fields by ``,``) as float64 (nrows, ncols), or None.

    Also returns, (nrows, ncols) each, whether a field is an integer literal (the target's
    type) and its integer part as int64 (exact unless it saturates at the int64 limits). None
    when any field is not ``[+-]digits[.digits][(e|E)[+-]digits]`` or a row does not have
    ``ncols`` fields: the careful reader then decides. Every value is correctly rounded.
    """
    if body.translate(None, _ALLOWED):
        return None  # letters, spaces, quotes, ...: not for the fast path
    commas = body.translate(_TO_COMMA)
    with warnings.catch_warnings():  # NumPy < 2.3 warns (and stops) where later ones raise
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            vals = np.fromstring(commas, dtype=np.int64, sep=",")
        except ValueError:
            return None
    a = np.frombuffer(body, np.uint8)
    L = a.size
    marks = np.flatnonzero(np.frombuffer(commas, np.uint8) == ord(","))
    T = marks.size + 1  # tokens: the digits between marks
    nf = nrows * ncols
    if vals.size != T:
        return None
    # kb[t]: what precedes token t (a field separator, a point or an exponent mark).
    kb = np.empty(T + 2, np.uint8)
    kb[0], kb[1:T], kb[T:] = _SEP, _KIND[a[marks]], _SEP
    ft = np.flatnonzero(kb[:T] <= _NL)  # each field's first token
    if ft.size != nf or (nrows > 1 and not (kb[ft[ncols::ncols]] == _NL).all()):
        return None  # a row with too few or too many fields
    inner = kb[1:T] > _NL  # within a field only "digits.digits" then "e digits"
    if (inner[:-1] & inner[1:] & ~((kb[1 : T - 1] == _DOT) & (kb[2:T] == _EXP))).any():
        return None
    bounds = np.concatenate(([-1], marks, [L]))  # token t is body[bounds[t] + 1 : bounds[t + 1]]
    tlen = np.zeros(T + 2, np.int64)  # token lengths
    np.subtract(bounds[1:], bounds[:-1] + 1, out=tlen[:T])
    if tlen[:T].min() < 1:
        return None  # an empty field, ".5", "5.", "1e"
    fstart = bounds[ft] + 1
    I = vals[ft]  # noqa: N806  integer part, signed
    big = (I == _I64.max) | (I == _I64.min)  # saturated: too many digits
    M = np.abs(I).view(np.uint64)  # noqa: N806  the mantissa's digits as an integer
    ilen = tlen[ft]
    signs = b"-" in body or b"+" in body
    neg = None
    if signs:
        first = a[fstart]
        neg = first == ord("-")
        ilen -= neg | (first == ord("+"))
        one = np.flatnonzero(tlen[:T] == 1)
        if (a[bounds[one] + 1] - ord("0") > 9).any():
            return None  # a sign alone ("-", "1e-")
    e10 = None  # the power of ten of each field
    isint = np.ones(nf, bool)  # a field of one token: an integer literal
    if T > nf:
        vals = np.concatenate([vals, [0, 0]])
        sec = ft + 1  # each field's second token, if kb[sec] is not a field separator
        k2 = kb[sec]
        isint = k2 <= _NL
        dot = k2 == _DOT
        if dot.any():
            if signs and (a[bounds[ft[dot] + 1] + 1] - ord("0") > 9).any():
                return None  # a sign after the point
            fl = np.where(dot, tlen[sec], 0)
            F = np.where(dot, vals[sec], 0)  # noqa: N806  the digits after the point
            big |= (F == _I64.max) | ((M != 0) & (ilen + fl > 19))
            M *= _P10U[np.minimum(fl, 19)]
            M += F.view(np.uint64)
            e10 = -fl
        if T - nf > np.count_nonzero(dot):  # exponents
            E = np.where(  # noqa: N806
                dot,
                np.where(kb[sec + 1] == _EXP, vals[sec + 1], 0),
                np.where(k2 == _EXP, vals[sec], 0),
            )
            big |= (E == _I64.max) | (E == _I64.min)
            e10 = E if e10 is None else e10 + E
    Mf = M.astype(np.float64)  # noqa: N806  exact up to 2**53
    if e10 is None:
        v = Mf
        slow = (M > 2**53) | big
    else:
        ae = np.abs(e10)
        slow = (M > 2**53) | (ae > 22) | big
        p = _P10F[np.minimum(ae, 22)]
        v = np.divide(Mf, p, where=e10 < 0, out=np.multiply(Mf, p))  # one rounding: exact
    s = np.flatnonzero(slow)
    if s.size and _P10L is not None:
        ok = ~big[s]
        if e10 is not None:
            ok &= ae[s] <= 27
        h = s[ok]
        r = M[h].astype(np.longdouble)  # exact below 2**64, as are 10**k, k <= 27
        if e10 is not None:
            eh = e10[h]
            p = _P10L[np.abs(eh)]
            r = np.divide(r, p, where=eh < 0, out=np.multiply(r, p))
        d = r.astype(np.float64)
        # Rounding to 64 bits then to 53 differs from rounding once only when the first
        # result lies exactly halfway between two float64 values: those go to float().
        if _X87:  # halfway: the 11 mantissa bits float64 drops are 100 0000 0000
            halfway = (r.view(np.uint64)[::2] & 0x7FF) == 0x400
        else:
            toward = np.nextafter(d, np.where(r > d, np.inf, -np.inf))
            halfway = (r != d) & ((r - d) == (toward.astype(np.longdouble) - d) / 2)
        v[h] = d
        s = np.concatenate([s[~ok], h[halfway]])
    if s.size:
        ends = bounds[np.append(ft, T)[s + 1]]
        v[s] = [
            abs(float(body[i:j])) for i, j in zip(fstart[s].tolist(), ends.tolist(), strict=True)
        ]
        if not np.isfinite(v[s]).all():
            return None  # 1e999: the careful reader names it
    if neg is not None:
        np.negative(v, out=v, where=neg)
    return v.reshape(nrows, ncols), isint.reshape(nrows, ncols), I.reshape(nrows, ncols)


def _chunks(f: Any) -> Any:
    """The rest of binary file ``f`` as bodies of whole lines, blank lines at the ends cut."""
    carry = b""
    while True:
        block = f.read(CHUNK)
        data = carry + block
        if block:
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            body, carry = data[:cut], data[cut + 1 :]
        else:
            body = data
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n").rstrip(b"\r")
        body = body.strip(b"\n")
        if body:
            yield body
        if not block:
            return


def _split_target(body: bytes, j: int, K: int) -> tuple[bytes, list[bytes]]:  # noqa: N803
    """(the lines without field ``j``, field ``j`` of each line): labels in the target."""
    lines = body.split(b"\n")
    if j == K - 1:
        parts = [line.rpartition(b",") for line in lines]
        return b"\n".join([p[0] for p in parts]), [p[2] for p in parts]
    if j == 0:
        parts = [line.partition(b",") for line in lines]
        return b"\n".join([p[2] for p in parts]), [p[0] for p in parts]
    rest, labels = [], []
    for line in lines:
        ps = line.split(b",", j + 1)
        if len(ps) < j + 2:
            raise _Retry
        labels.append(ps[j])
        rest.append(b",".join(ps[:j]) + b"," + ps[j + 1])
    return b"\n".join(rest), labels


def _read_fast(f: Any, rows: int, K: int, j: int | None) -> tuple[np.ndarray, Any]:  # noqa: N803
    """(X, target) from ``f`` after the header, or _Retry; target: (values, ints) or texts."""
    F = K - (j is not None)  # noqa: N806
    X = np.empty((rows, F))  # noqa: N806
    values = np.empty(rows) if j is not None else None
    ints = np.empty(rows, np.int64) if j is not None else None
    all_int = True
    texts: list[bytes] | None = None  # labels, once a chunk has had them
    r = 0
    for body in _chunks(f):
        n = body.count(b"\n") + 1
        if r + n > rows:
            raise _Retry
        parsed = None if texts is not None else _parse_numbers(body, n, K)
        if parsed is not None:
            block, isint, whole = parsed
            if j is None:
                X[r : r + n] = block
            else:
                X[r : r + n, :j] = block[:, :j]
                X[r : r + n, j:] = block[:, j + 1 :]
                values[r : r + n] = block[:, j]
                all_int = all_int and bool(isint[:, j].all())
                if all_int:
                    ints[r : r + n] = whole[:, j]
                    if np.isin(whole[:, j], (_I64.min, _I64.max)).any():
                        raise _Retry  # beyond int64: the careful reader takes them as names
        elif j is None or (texts is None and r > 0):
            raise _Retry  # a bad feature, or labels after numbers: the careful reader
        else:
            rest, labels = _split_target(body, j, K)
            parsed = _parse_numbers(rest, n, F)
            if parsed is None:
                raise _Retry
            X[r : r + n] = parsed[0]
            if texts is None:
                texts = labels
            else:
                texts.extend(labels)
        r += n
    if r == 0:
        raise _Retry
    X = _shrink(X, r)  # noqa: N806
    if j is None:
        return X, None
    if texts is not None:
        try:
            return X, [t.decode("utf-8").strip() for t in texts]
        except UnicodeDecodeError:
            raise _Retry from None
    return X, (values[:r], ints[:r] if all_int else None)


def _shrink(X: np.ndarray, n: int) -> np.ndarray:  # noqa: N803
    """The first ``n`` rows of ``X``, in place (no copy of the kept rows)."""
    if n < len(X):
        X.resize((n, *X.shape[1:]), refcheck=False)
    return X


# --- CSV: the careful reader -------------------------------------------------------------


def _value_error(
    path: Path, row: int, col: int, name: str, text: str, features_only: bool
) -> DataFileError:
    """The message for a feature value that is not a finite number."""
    where = f"{path}, row {row}, column {col} ({name!r})"
    if text.strip().lower() in MISSING:
        return DataFileError(
            f"{where}: the value is missing ({repr(text) if text else 'empty'}); nnet does not "
            f"guess missing values: fill it in or delete the row."
        )
    if _is_float(text):
        return DataFileError(f"{where}: {text!r} is not a finite number.")
    which = "every column" if features_only else "every column but the target"
    return DataFileError(
        f"{where}: {text!r} is not a number; {which} must hold numbers (drop or encode the column)."
    )


def _read_slow(
    path: Path, target: str | None, capacity: int
) -> tuple[list[str], int | None, np.ndarray, list[str], np.ndarray]:
    """(names, target index, X, target texts, row of each) with the csv module, row by row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise DataFileError(f"{path} is empty; it needs a header line and rows.")
            names = [n.strip() for n in header]
            j = _check_header(path, names, target)
            K = len(names)  # noqa: N806
            feats = [c for c in range(K) if c != j]
            X = np.empty((max(capacity, 1), len(feats)))  # noqa: N806
            lines = np.empty(len(X), np.int64)
            texts: list[str] = []
            n, prev = 0, reader.line_num
            for row in reader:
                line, prev = prev + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                if len(row) != K:
                    raise DataFileError(
                        f"{path}, row {line}: {len(row)} fields, but the header has {K} "
                        f"columns; every row needs one value per column (look for a missing "
                        f"or extra comma)."
                    )
                if n == len(X):  # more rows than lines counted: lone carriage returns
                    _check_size(path, n + 1, len(feats))
                    X.resize((2 * n, len(feats)), refcheck=False)
                    lines.resize(2 * n, refcheck=False)
                cells = row if j is None else [row[c] for c in feats]
                try:
                    vals = [float(t) for t in cells]
                except ValueError:
                    vals = []
                if len(vals) < len(cells) or not math.isfinite(sum(vals)):
                    for c, t in zip(feats, cells, strict=True):
                        if not (_is_float(t) and math.isfinite(float(t))):
                            raise _value_error(path, line, c + 1, names[c], t, j is None)
                X[n] = vals
                if j is not None:
                    texts.append(row[j].strip())
                lines[n] = line
                n += 1
        except csv.Error as e:
            raise DataFileError(f"{path}, row {reader.line_num}: {e}.") from None
        except UnicodeDecodeError:
            raise DataFileError(
                f"{path}, row {_first_non_utf8(path)}: the text is not UTF-8; save the file as "
                f"UTF-8 CSV."
            ) from None
    if n == 0:
        raise DataFileError(f"{path} has a header but no rows of data.")
    return names, j, _shrink(X, n), texts, lines[:n]


def _first_non_utf8(path: Path) -> int:
    """The number of the first line that is not UTF-8 (the decoder reads ahead of csv)."""
    with open(path, "rb") as f:
        for row, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return 0


def _check_size(path: Path, rows: int, features: int) -> None:
    if rows > MAX_ROWS:
        raise DataFileError(f"{path} has {rows} rows; nnet reads at most {MAX_ROWS}.")
    if rows * features > MAX_VALUES:
        raise DataFileError(
            f"{path} has {rows} rows of {features} features, {rows * features} values; nnet "
            f"reads at most {MAX_VALUES} (2 GB as float64)."
        )


def _scan(path: Path) -> tuple[bytes, int, bool]:
    """(the first line, the most rows after it, whether a double quote appears anywhere)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(MAX_HEADER_BYTES + 1)
            if not first.strip():
                what = "is empty" if not first else "starts with a blank line"
                raise DataFileError(
                    f"{path} {what}; the first line must name the columns, the rows follow."
                )
            if len(first) > MAX_HEADER_BYTES:
                raise DataFileError(
                    f"{path}, row 1: the header is longer than {MAX_HEADER_BYTES} bytes; is it "
                    f"a CSV file?"
                )
            quoted, rows, last = b'"' in first, 0, b"\n"
            while block := f.read(CHUNK):
                rows += block.count(b"\n")
                quoted = quoted or b'"' in block
                last = block
            return first, rows + (not last.endswith(b"\n")), quoted
    except OSError as e:
        raise _open_error(path, e) from None


def read_table(
    path: str | os.PathLike[str], *, target: str | None, task: str | None = None
) -> Table:
    """The CSV file at ``path`` as a :class:`Table` (the rules: this module's docstring).

    ``target`` names the column to learn (None: every column is a feature, input to
    predict); ``task`` ("classification" or "regression") overrides what the target's type
    says. Raises :class:`DataFileError` naming the file, row and column of any problem.
    """
    path = Path(path)
    _check_task(task)
    first, rows, quoted = _scan(path)
    if not quoted:
        names = _header_fields(path, first)
        j = _check_header(path, names, target)
        K = len(names)  # noqa: N806
        F = K - (j is not None)  # noqa: N806
        if rows == 0:
            raise DataFileError(f"{path} has a header but no rows of data.")
        _check_size(path, rows, F)
        try:
            with open(path, "rb") as f:
                f.readline(MAX_HEADER_BYTES + 1)
                X, got = _read_fast(f, rows, K, j)  # noqa: N806
            feature_names = tuple(n for c, n in enumerate(names) if c != j)
            if j is None:
                return Table(X, None, feature_names, None, None)
            where = _Where(path, j + 1, names[j])
            if isinstance(got, list):
                y, classes, task = _texts_target(where, got, None, task)
            else:
                y, classes, task = _numbers_target(where, *got, task)
            return Table(X, y, feature_names, target, task, classes)
        except _Retry:
            pass
        except OSError as e:
            raise _open_error(path, e) from None
    try:
        names, j, X, texts, lines = _read_slow(path, target, rows)  # noqa: N806
    except OSError as e:
        raise _open_error(path, e) from None
    feature_names = tuple(n for c, n in enumerate(names) if c != j)
    if j is None:
        return Table(X, None, feature_names, None, None)
    y, classes, task = _texts_target(_Where(path, j + 1, names[j]), texts, lines, task)
    return Table(X, y, feature_names, target, task, classes)


# --- .npz: X and y -------------------------------------------------------------------------


def _npy_header(path: Path, zf: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype ``key`` declares, read before its data."""
    if f"{key}.npy" not in zf.namelist():
        held = sorted(n.removesuffix(".npy") for n in zf.namelist())
        raise DataFileError(
            f"{path} has no array {key!r} (it holds {', '.join(held) or 'nothing'}); save it "
            f"with numpy.savez(path, X=features, y=targets)."
        )
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    return shape, dtype


def read_arrays(path: str | os.PathLike[str], *, task: str | None = None) -> Table:
    """The ``.npz`` file at ``path`` (arrays ``X``, N x F numbers, and ``y``, N) as a Table.

    Integer (or boolean) and string ``y`` is classification, float ``y`` regression; ``task``
    overrides it as in :func:`read_table`. Shapes and types are checked from the arrays'
    headers before their data is read; nothing is unpickled.
    """
    path = Path(path)
    _check_task(task)
    try:
        with zipfile.ZipFile(path) as zf:
            (x_shape, x_type), (y_shape, y_type) = (_npy_header(path, zf, k) for k in "Xy")
    except OSError as e:
        raise _open_error(path, e) from None
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise DataFileError(
            f"{path} is not a NumPy .npz file ({e}); save one with numpy.savez(path, X=..., y=...)."
        ) from None
    if len(x_shape) != 2 or 0 in x_shape:
        raise DataFileError(
            f"{path}: X has shape {x_shape}; it must be N x F, one row per sample (N, F >= 1)."
        )
    N, F = x_shape  # noqa: N806
    if x_type.kind not in "biuf":
        raise DataFileError(f"{path}: X holds {x_type}, not numbers.")
    if y_shape != (N,):
        raise DataFileError(
            f"{path}: y has shape {y_shape}; it must be ({N},), one target per row of X."
        )
    if y_type.kind not in "biufUS":
        raise DataFileError(f"{path}: y holds {y_type}; targets are numbers or strings.")
    if F > MAX_COLUMNS:
        raise DataFileError(f"{path}: X has {F} columns; nnet reads at most {MAX_COLUMNS}.")
    _check_size(path, N, F)
    try:
        with np.load(path, allow_pickle=False) as z:
            X, y = z["X"], z["y"]  # noqa: N806
    except Exception as e:  # noqa: BLE001  a damaged member: zlib, zipfile, format errors
        raise DataFileError(f"{path} is damaged ({type(e).__name__}: {e}).") from None
    X = np.ascontiguousarray(X, dtype=np.float64)  # noqa: N806
    bad = np.flatnonzero(~np.isfinite(X))
    if bad.size:
        r, c = divmod(int(bad[0]), F)
        raise DataFileError(
            f"{path}: X[{r}, {c}] (row {r}, column {c}, from 0) is {X[r, c]}; nnet needs "
            f"finite numbers and does not guess missing ones."
        )
    names = tuple(f"x{i}" for i in range(F))
    where = _Where(path, None, "y")
    if y.dtype.kind in "US":
        texts = list(y)
        for i, t in enumerate(texts):
            if isinstance(t, bytes):
                try:
                    texts[i] = t = t.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataFileError(f"{path}: y[{i}] is not UTF-8 text.") from None
            if str(t).strip().lower() in MISSING:
                raise DataFileError(
                    f"{path}: y[{i}] is {str(t)!r}, a missing label; fill it in or delete the row."
                )
        if task == "regression":
            raise DataFileError(
                f"{path}: y holds strings ({str(texts[0])!r}, ...), and regression needs "
                f"numbers; for labels use task 'classification'."
            )
        y, classes = _encode(where, np.asarray(texts, dtype=str))
        return Table(X, y, names, "y", "classification", classes)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            i = int(bad[0])
            raise DataFileError(f"{path}: y[{i}] is {y[i]}; targets must be finite numbers.")
        y, classes, task = _numbers_target(where, y.astype(np.float64), None, task)
    else:
        y, classes, task = _numbers_target(where, y.astype(np.float64), y, task)
    return Table(X, y, names, "y", task, classes)


# --- feature scaling ---------------------------------------------------------------------


class Standardizer:
    """Feature scaling, column by column: x' = (x - mean) / scale.

    ``fit`` takes each column's mean and standard deviation; a constant column gets its
    value as mean and scale 1 (it becomes exactly 0). A model file stores it as
    ``net.meta["scaling"] = to_meta()``: plain JSON lists, the meaning fixed (the ONNX
    export folds it into the first layer).
    """

    def __init__(self, mean: Sequence[float] | np.ndarray, scale: Sequence[float] | np.ndarray):
        self.mean = np.array(mean, dtype=np.float64)
        self.scale = np.array(scale, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.shape != self.scale.shape or not self.mean.size:
            raise NnetError(
                f"scaling needs one mean and one scale per feature, not shapes "
                f"{self.mean.shape} and {self.scale.shape}."
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.scale).all()):
            raise NnetError("scaling: every mean and scale must be a finite number.")
        if (self.scale <= 0).any():
            raise NnetError("scaling: every scale must be positive.")

    @property
    def n_features(self) -> int:
        return self.mean.size

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:  # noqa: N803
        """The scaling that gives each column of ``X`` (N x F) mean 0 and deviation 1."""
        X = np.asarray(X)  # noqa: N806
        if X.ndim != 2 or not X.size:
            raise NnetError(f"scaling is fitted to N x F data, not shape {X.shape}.")
        with np.errstate(invalid="ignore", over="ignore"):
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            c = int(np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))[0])
            raise NnetError(
                f"scaling: column {c} (from 0) has no finite mean and deviation (a value is "
                f"not finite, or too large)."
            )
        constant = (std == 0) | (X.max(axis=0) == X.min(axis=0))  # its mean may be rounded
        return cls(np.where(constant, X[0], mean), np.where(constant, 1.0, std))

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """(X - mean) / scale, a new array (float64, or X's float type); X is N x F or F."""
        X = np.asarray(X)  # noqa: N806
        if X.shape[-1:] != (self.n_features,) or X.ndim > 2:
            raise NnetError(
                f"the input has shape {X.shape}, but the scaling was fitted to "
                f"{self.n_features} features."
            )
        dtype = X.dtype if X.dtype.kind == "f" else np.float64
        return (X - self.mean.astype(dtype)) / self.scale.astype(dtype)

    def to_meta(self) -> dict[str, list[float]]:
        """``{"mean": [...], "scale": [...]}``, plain floats: JSON keeps them exactly."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_meta(cls, meta: Any) -> Standardizer:
        """The scaling ``to_meta`` described; NnetError if ``meta`` is not such a dict."""
        if not isinstance(meta, dict) or set(meta) != {"mean", "scale"}:
            raise NnetError(
                "scaling must be {'mean': [...], 'scale': [...]}; the model file is damaged."
            )
        for key in ("mean", "scale"):
            v = meta[key]
            if not isinstance(v, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
            ):
                raise NnetError(
                    f"scaling: {key} must be a list of numbers; the model file is damaged."
                )
        return cls(meta["mean"], meta["scale"])

    def __repr__(self) -> str:
        return f"Standardizer({self.n_features} features)"
