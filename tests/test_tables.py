"""nnet.data.tables: CSV and .npz files read into a Table, every problem named; scaling.

Real values throughout: files written here, read back, compared exactly; each error message
checked for the file, the row and the column it must name. The fast CSV parser is compared
with Python's float() on thousands of numbers, and the two CSV readers with each other.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnet.data import tables
from nnet.data.tables import (
    DataFileError,
    Standardizer,
    Table,
    _parse_numbers,
    read_arrays,
    read_table,
)
from nnet.errors import NnetError


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def csv_of(X: np.ndarray, labels: list, names: list[str], target: str = "label") -> str:
    """A CSV of ``X`` (repr of each float) with the labels as the last column."""
    lines = [",".join([*names, target])]
    lines += [
        ",".join([*map(repr, row), str(t)]) for row, t in zip(X.tolist(), labels, strict=True)
    ]
    return "\n".join(lines) + "\n"


def fast(path: Path, **kw) -> Table:
    """read_table, asserting that the fast path read the file."""
    orig = tables._read_slow
    tables._read_slow = lambda *a: pytest.fail("the careful reader was used")
    try:
        return read_table(path, **kw)
    finally:
        tables._read_slow = orig


def slow(path: Path, **kw) -> Table:
    """read_table through the careful reader only (the fast path refused)."""
    orig = tables._parse_numbers
    tables._parse_numbers = lambda *a: None
    try:
        return read_table(path, **kw)
    finally:
        tables._parse_numbers = orig


def same(a: Table, b: Table) -> None:
    assert np.array_equal(a.X, b.X) and a.X.dtype == b.X.dtype == np.float64
    assert (a.y is None) == (b.y is None)
    if a.y is not None:
        assert np.array_equal(a.y, b.y) and a.y.dtype == b.y.dtype
    assert (a.feature_names, a.target, a.task, a.classes) == (
        b.feature_names,
        b.target,
        b.task,
        b.classes,
    )
    assert [type(c) for c in a.classes] == [type(c) for c in b.classes]


# ----------------------------------------------------------------------------- round trips


def test_csv_round_trip_classification(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)) * 10.0 ** rng.integers(-6, 6, size=(50, 4))
    labels = rng.integers(-1, 3, 50).tolist()
    p = write(tmp_path / "d.csv", csv_of(X, labels, ["a", "b", "c", "d"]))
    t = fast(p, target="label")
    assert np.array_equal(t.X, X) and t.X.shape == (50, 4)
    assert t.task == "classification" and t.classes == (-1, 0, 1, 2)
    assert all(type(c) is int for c in t.classes)
    assert t.y.dtype == np.int64 and [t.classes[i] for i in t.y] == labels
    assert t.feature_names == ("a", "b", "c", "d") and t.target == "label" and len(t) == 50
    same(t, slow(p, target="label"))


def test_csv_regression_and_string_labels(tmp_path):
    X = np.arange(12.0).reshape(6, 2) / 7
    p = write(tmp_path / "r.csv", csv_of(X, [0.5, 1.0, -2.25, 3e-3, 4.0, 1e10], ["u", "v"], "y"))
    t = fast(p, target="y")
    assert t.task == "regression" and t.classes == () and t.y.dtype == np.float64
    assert t.y.tolist() == [0.5, 1.0, -2.25, 3e-3, 4.0, 1e10]
    same(t, slow(p, target="y"))

    names = ["virginica", "setosa", "versicolor", "setosa", "virginica", "setosa"]
    p = write(tmp_path / "s.csv", csv_of(X, names, ["u", "v"], "species"))
    t = fast(p, target="species")
    assert t.task == "classification" and t.classes == ("setosa", "versicolor", "virginica")
    assert [t.classes[i] for i in t.y] == names and np.array_equal(t.X, X)
    same(t, slow(p, target="species"))
    # Digits as labels stay strings when any label is not a number: "1" is not 1.
    p = write(tmp_path / "m.csv", "x,k\n1,1\n2,b\n3,10\n")
    assert fast(p, target="k").classes == ("1", "10", "b")
    # Integers beyond int64 are names too, whichever reader meets them.
    p = write(tmp_path / "big.csv", "x,k\n1,99999999999999999999\n2,5\n3,5\n")
    assert read_table(p, target="k").classes == ("5", "99999999999999999999")


def test_target_in_any_column_and_none(tmp_path):
    p = write(tmp_path / "t.csv", "label,a,kind,b\nx,1,p,2.5\ny,3,q,-4\nx,5,p,6e1\n")
    with pytest.raises(DataFileError, match=r"row 2, column 3 \('kind'\): 'p' is not a number"):
        read_table(p, target="label")  # other columns must be numbers
    p = write(tmp_path / "u.csv", "label,a,kind,b\nx,1,7,2.5\ny,3,8,-4\nx,5,7,6e1\n")
    t = fast(p, target="label")
    assert t.feature_names == ("a", "kind", "b") and t.classes == ("x", "y")
    assert t.X.tolist() == [[1, 7, 2.5], [3, 8, -4], [5, 7, 60]] and t.y.tolist() == [0, 1, 0]
    same(t, slow(p, target="label"))
    p = write(tmp_path / "v.csv", "a,kind,b\n1,p,2.5\n3,q,-4\n5,p,6e1\n")
    t = fast(p, target="kind")
    assert t.feature_names == ("a", "b") and t.classes == ("p", "q") and t.y.tolist() == [0, 1, 0]
    assert t.X.tolist() == [[1, 2.5], [3, -4], [5, 60]]
    same(t, slow(p, target="kind"))
    t = read_table(write(tmp_path / "w.csv", "a,b\n1,2\n3,4\n"), target=None)
    assert t.y is None and t.task is None and t.target is None and t.classes == ()
    assert t.feature_names == ("a", "b") and t.X.tolist() == [[1, 2], [3, 4]]


def test_task_overrides(tmp_path):
    p = write(tmp_path / "i.csv", "x,y\n0.5,3\n1.5,1\n2.5,3\n")
    t = fast(p, target="y", task="regression")
    assert t.task == "regression" and t.y.tolist() == [3.0, 1.0, 3.0] and t.classes == ()
    p = write(tmp_path / "f.csv", "x,y\n0.5,3.5\n1.5,1.0\n2.5,3.5\n")
    t = fast(p, target="y", task="classification")
    assert t.classes == (1.0, 3.5) and t.y.tolist() == [1, 0, 1]
    assert all(type(c) is float for c in t.classes)
    with pytest.raises(NnetError, match="task must be"):
        read_table(p, target="y", task="clustering")
    p = write(tmp_path / "s.csv", "x,y\n0.5,a\n1.5,b\n")
    with pytest.raises(DataFileError, match=r"s.csv, row 2, column 2 \('y'\): 'a' is not a num"):
        read_table(p, target="y", task="regression")


def test_quoting_bom_crlf_blank_lines_and_spaces(tmp_path):
    """What the fast path leaves to the csv module gives the same table."""
    p = write(
        tmp_path / "q.csv",
        '\ufeff"a","b, c",label\r\n1,2,"Iris, setosa"\r\n\r\n3, 4 ,"x"\r\n5,6,"Iris, setosa"\r\n\n',
    )
    t = read_table(p, target="label")
    assert t.feature_names == ("a", "b, c") and t.classes == ("Iris, setosa", "x")
    assert t.X.tolist() == [[1, 2], [3, 4], [5, 6]] and t.y.tolist() == [0, 1, 0]
    clean = write(tmp_path / "c.csv", "a,b\r\n1,2\r\n3,4\r\n\r\n\r\n")
    assert read_table(clean, target=None).X.tolist() == [[1, 2], [3, 4]]


def test_many_chunks(tmp_path, monkeypatch):
    """Chunk boundaries anywhere: the same as numpy.loadtxt, labels in order."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 7))
    X[::7, 3] = np.round(X[::7, 3] * 1e4)  # some integers, some exponents
    X[::11, 2] *= 1e-7
    labels = rng.integers(0, 5, 300).tolist()
    p = write(tmp_path / "d.csv", csv_of(X, labels, list("abcdefg")))
    monkeypatch.setattr(tables, "CHUNK", 97)
    t = fast(p, target="label")
    ref = np.loadtxt(p, delimiter=",", skiprows=1)
    assert np.array_equal(t.X, ref[:, :-1]) and [t.classes[i] for i in t.y] == labels
    words = [f"w{k}" for k in labels]
    t = fast(write(tmp_path / "w.csv", csv_of(X, words, list("abcdefg"))), target="label")
    assert np.array_equal(t.X, X) and [t.classes[i] for i in t.y] == words
    p = write(tmp_path / "b.csv", csv_of(X, words, list("abcdefg")).replace("\n", "\n\n", 40))
    t = read_table(p, target="label")  # blank lines: the careful reader skips them
    assert np.array_equal(t.X, X) and [t.classes[i] for i in t.y] == words
    # Numbers in the first chunks, words later: labels, as strings.
    mixed = [str(k) for k in labels[:-1]] + ["other"]
    t = read_table(write(tmp_path / "m.csv", csv_of(X, mixed, list("abcdefg"))), target="label")
    assert t.classes == ("0", "1", "2", "3", "4", "other") and np.array_equal(t.X, X)


# ----------------------------------------------------------------------------- the fast parser


def random_number(rng: random.Random) -> str:
    digits = "0123456789"
    k = rng.randrange(9)
    if k == 0:
        return repr(rng.random() * 10 ** rng.randint(-30, 30))
    if k == 1:
        return repr(-rng.random())
    if k == 2:
        return str(rng.randint(-(10**25), 10**25))
    if k == 3:
        return f"{rng.uniform(-1e3, 1e3):.{rng.randint(0, 25)}f}"
    if k == 4:
        return f"{rng.uniform(-1e5, 1e5):.{rng.randint(0, 20)}e}"
    if k == 5:
        whole = "".join(rng.choice(digits) for _ in range(rng.randint(1, 22)))
        return whole + "." + "".join(rng.choice(digits) for _ in range(rng.randint(1, 22)))
    if k == 6:
        sign, esign = rng.choice(["+", "-", ""]), rng.choice(["+", "-", ""])
        return f"{sign}{rng.randint(0, 10**6)}{rng.choice('eE')}{esign}{rng.randint(0, 400)}"
    if k == 7:  # halfway between two float64 values: the double-rounding trap
        return repr(float(rng.randint(2**53, 2**60)) + 0.5)
    return str(2**53 + rng.randint(-5, 5)) + rng.choice(["", ".5", "0", ".0"])


HALFWAY = ["9007199254740993", "9007199254740993.0", "4503599627370496.5", "-18014398509481990",
           "18014398509481986e0", "9007199254740995", "1.8014398509481985e16"]  # fmt: skip


@pytest.mark.parametrize("extended", ["x87 bits", "nextafter", "none"])
def test_fast_parser_is_float_exactly(monkeypatch, extended):
    """Correctly rounded as float() is, whichever way long mantissas are computed."""
    if extended != "x87 bits":
        monkeypatch.setattr(tables, "_X87", False)
    if extended == "none":
        monkeypatch.setattr(tables, "_P10L", None)
    rng = random.Random(0)
    for trial in range(300):
        nr, nc = rng.randint(1, 4), rng.randint(1, 6)
        cells = [[random_number(rng) for _ in range(nc)] for _ in range(nr)]
        if trial == 0:
            cells = [HALFWAY]
            nr, nc = 1, len(HALFWAY)
        body = "\n".join(",".join(r) for r in cells).encode()
        got = _parse_numbers(body, nr, nc)
        ref = np.array([[float(c) for c in r] for r in cells])
        if not np.isfinite(ref).all():
            assert got is None  # left to the careful reader, which names it
            continue
        v, isint, whole = got
        assert np.array_equal(v, ref) and np.array_equal(np.signbit(v), np.signbit(ref)), cells
        for (i, j), c in np.ndenumerate(np.array(cells, dtype=object)):
            literal = not any(ch in c for ch in ".eE")
            assert isint[i, j] == literal, c
            if literal and abs(int(c)) < 2**63 - 1:
                assert whole[i, j] == int(c)


@pytest.mark.parametrize(
    "body",
    [b"1,,2", b"-", b"1e", b".5", b"5.", b"1.2.3", b"1e5e5", b"1e5.3", b"1-2", b"--1",
     b"1.-5", b"+", b"1e+", b" 1", b"nan", b"inf", b"0x10", b"1_0", b"-.5", b"e5", b"1e999",
     b"1\r"],
)  # fmt: skip
def test_fast_parser_refuses(body):
    assert _parse_numbers(body, 1, body.count(b",") + 1) is None


def test_fast_parser_counts_fields():
    assert _parse_numbers(b"1,2\n3", 2, 2) is None
    assert _parse_numbers(b"1,2,3\n4", 2, 2) is None
    assert _parse_numbers(b"1\n2,3", 2, 2) is None
    v, isint, whole = _parse_numbers(b"1,-2.5\n3e2,+4", 2, 2)
    assert v.tolist() == [[1, -2.5], [300, 4]] and isint.tolist() == [[1, 0], [0, 1]]


# ----------------------------------------------------------------------------- CSV errors


def err(path: Path, **kw) -> str:
    kw.setdefault("target", "label")
    with pytest.raises(DataFileError) as e:
        read_table(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_file_level_errors(tmp_path):
    assert "does not exist" in err(tmp_path / "nope.csv")
    assert "is a folder" in err(tmp_path)
    assert "is empty" in err(write(tmp_path / "e.csv", ""))
    assert "blank line" in err(write(tmp_path / "b.csv", "\n\na,label\n1,2\n"))
    assert "no rows" in err(write(tmp_path / "h.csv", "a,label\n"))
    assert "no rows" in err(write(tmp_path / "h2.csv", "a,label\n\n\n"))
    msg = err(write(tmp_path / "u.csv", b"a,label\n1,x\n2,y\n3,\xff\n"))
    assert "row 4: the text is not UTF-8" in msg
    assert "not UTF-8" in err(write(tmp_path / "u1.csv", b"\x89PNG\r\n\x1a\n"))


def test_header_errors(tmp_path):
    msg = err(write(tmp_path / "n.csv", "1,2,3\n4,5,6\n"))
    assert "row 1" in msg and "not column names" in msg
    msg = err(write(tmp_path / "t.csv", "a,b,c\n1,2,3\n"))
    assert "no column named 'label'" in msg and "'a', 'b', 'c'" in msg
    assert "comma-separated" in err(write(tmp_path / "s.csv", "a;b;label\n1;2;3\n"))
    msg = err(write(tmp_path / "d.csv", "a,label,a\n1,2,3\n"))
    assert "row 1" in msg and "columns 1 and 3 are both named 'a'" in msg
    assert "row 1, column 2: the column has no name" in err(write(tmp_path / "e.csv", "a,,label\n"))
    assert "only column" in err(write(tmp_path / "o.csv", "label\n1\n2\n"))


@pytest.mark.parametrize("quoted", [False, True])
def test_row_errors(tmp_path, quoted):
    """Each names its row (the header is row 1) and column; quoting takes the csv module."""
    head = '"a",b,label\n' if quoted else "a,b,label\n"

    def check(rows: str, *parts: str, **kw) -> None:
        msg = err(write(tmp_path / "r.csv", head + rows), **kw)
        for part in parts:
            assert part in msg, (part, msg)

    check("1,2,x\n3,4\n", "r.csv, row 3: 2 fields, but the header has 3 columns")
    check("1,2,x\n3,4,y,5\n", "row 3: 4 fields")
    check("1,2,x\n3,abc,y\n", "row 3, column 2 ('b'): 'abc' is not a number")
    check("1,2,x\n\n3,4,y\n5,,z\n", "row 5, column 2 ('b'): the value is missing (empty)")
    check("1,NA,x\n", "row 2, column 2 ('b'): the value is missing ('NA')")
    check("nan,2,x\n", "row 2, column 1 ('a'): the value is missing ('nan')")
    check("1,2,x\n-inf,2,x\n", "row 3, column 1 ('a'): '-inf' is not a finite number")
    check("1,2,x\n3,1e999,y\n", "row 3, column 2 ('b'): '1e999' is not a finite number")
    check("1,2,x\n3,4,\n", "row 3, column 3 ('label'): the target is missing (empty)")
    check("1,2,3\n3,4,N/A\n", "row 3, column 3 ('label'): the target is missing ('N/A')")
    check("1,2,3.5\n3,4,inf\n", "row 3, column 3 ('label'): 'inf' is not a finite number")
    check("1,2,x\n3,4,x\n", "column 3 ('label') holds one class only ('x')")
    check("1,2,7\n3,4,7\n", "holds one class only (7)")
    check("1,2,x\n3,4,y\n", "row 2, column 3 ('label'): 'x' is not a number", target=None)


def test_quoted_record_spanning_lines_is_numbered_by_its_first_line(tmp_path):
    p = write(tmp_path / "q.csv", 'a,label\n1,"two\nlines"\n2,x\nbad,y\n')
    assert "row 5, column 1 ('a'): 'bad'" in err(p)


def test_limits(tmp_path, monkeypatch):
    p = write(tmp_path / "d.csv", "a,b,label\n1,2,x\n3,4,y\n5,6,z\n")
    monkeypatch.setattr(tables, "MAX_ROWS", 2)
    assert "3 rows; nnet reads at most 2" in err(p)
    monkeypatch.setattr(tables, "MAX_ROWS", 10)
    monkeypatch.setattr(tables, "MAX_VALUES", 5)
    assert "6 values; nnet reads at most 5" in err(p)
    monkeypatch.setattr(tables, "MAX_COLUMNS", 2)
    assert "3 columns; nnet reads at most 2" in err(p)
    monkeypatch.setattr(tables, "MAX_COLUMNS", 10)
    monkeypatch.setattr(tables, "MAX_VALUES", 100)
    monkeypatch.setattr(tables, "MAX_CLASSES", 2)
    assert "3 distinct labels, more than the 2 classes" in err(p)


# ----------------------------------------------------------------------------- .npz


def test_npz_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 3))
    p = tmp_path / "a.npz"
    np.savez(p, X=X.astype(np.float32), y=rng.integers(0, 3, 20))
    t = read_arrays(p)
    assert t.X.dtype == np.float64 and np.array_equal(t.X, X.astype(np.float32))
    assert t.task == "classification" and t.classes == (0, 1, 2) and t.target == "y"
    assert t.feature_names == ("x0", "x1", "x2")
    np.savez_compressed(p, X=X, y=X[:, 0] * 2)
    t = read_arrays(p)
    assert t.task == "regression" and np.array_equal(t.y, X[:, 0] * 2) and t.classes == ()
    labels = np.array(["cat", "dog", "cat", "emu"] * 5)
    np.savez(p, X=X, y=labels)
    t = read_arrays(p)
    assert t.classes == ("cat", "dog", "emu") and all(type(c) is str for c in t.classes)
    assert np.array_equal(np.array(t.classes)[t.y], labels)
    np.savez(p, X=X, y=np.char.encode(labels))
    assert read_arrays(p).classes == ("cat", "dog", "emu")
    np.savez(p, X=X.astype(np.int16), y=np.arange(20) % 2)
    t = read_arrays(p, task="regression")
    assert t.task == "regression" and t.y.dtype == np.float64 and t.X.dtype == np.float64


def test_npz_errors(tmp_path):
    p = tmp_path / "a.npz"

    def check(part: str, **arrays) -> None:
        np.savez(p, **arrays)
        with pytest.raises(DataFileError, match=None) as e:
            read_arrays(p)
        assert part in str(e.value) and str(p) in str(e.value), str(e.value)

    X = np.zeros((4, 2))
    check("no array 'y' (it holds X)", X=X)
    check("X has shape (4,)", X=np.zeros(4), y=np.zeros(4))
    check("X has shape (0, 2)", X=np.zeros((0, 2)), y=np.zeros(0))
    check("y has shape (3,); it must be (4,)", X=X, y=np.zeros(3))
    check("X holds complex128", X=X + 0j, y=np.arange(4))
    check("y holds object", X=X, y=np.array([1, "a", None, 2.0], dtype=object))
    bad = X.copy()
    bad[2, 1] = np.nan
    check("X[2, 1] (row 2, column 1, from 0) is nan", X=bad, y=np.arange(4))
    check("y[1] is inf", X=X, y=np.array([0.5, np.inf, 1, 2]))
    check("y holds one class only (3)", X=X, y=np.full(4, 3))
    check("y[2] is 'NA', a missing label", X=X, y=np.array(["a", "b", "NA", "a"]))
    with pytest.raises(DataFileError, match="regression needs numbers"):
        np.savez(p, X=X, y=np.array(list("abab")))
        read_arrays(p, task="regression")
    with pytest.raises(DataFileError, match="does not exist"):
        read_arrays(tmp_path / "none.npz")
    with pytest.raises(DataFileError, match="not a NumPy .npz file"):
        read_arrays(write(tmp_path / "t.npz", "X,y\n1,2\n"))
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(DataFileError, match="not a NumPy .npz file"):
        read_arrays(tmp_path / "x.npy")


# ----------------------------------------------------------------------------- scaling


def test_standardizer_fit_transform_and_json_round_trip():
    rng = np.random.default_rng(3)
    X = rng.normal(5, 3, size=(200, 4))
    X[:, 2] = 0.1  # constant: scale 1, becomes 0
    s = Standardizer.fit(X)
    Z = s.transform(X)
    np.testing.assert_allclose(Z[:, [0, 1, 3]].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 1, 3]].std(0), 1, rtol=1e-12)
    assert s.scale[2] == 1.0 and np.all(Z[:, 2] == 0)
    meta = json.loads(json.dumps(s.to_meta()))
    assert set(meta) == {"mean", "scale"} and all(type(v) is float for v in meta["mean"])
    back = Standardizer.from_meta(meta)
    assert np.array_equal(back.transform(X), Z)  # exactly: JSON keeps every float
    np.testing.assert_array_equal(Z, (X - np.array(meta["mean"])) / np.array(meta["scale"]))
    assert back.transform(X[0]).shape == (4,)
    assert back.transform(X.astype(np.float32)).dtype == np.float32


def test_standardizer_refuses():
    s = Standardizer([0.0, 1.0], [1.0, 2.0])
    with pytest.raises(NnetError, match="fitted to 2 features"):
        s.transform(np.zeros((3, 3)))
    bads = [None, {"mean": [1.0]}, {"mean": [1.0], "scale": ["x"]},
            {"mean": [1.0], "scale": [True]}, {"mean": [1.0, 2.0], "scale": [1.0]},
            {"mean": [1.0], "scale": [0.0]}, {"mean": [float("nan")], "scale": [1.0]}]  # fmt: skip
    for bad in bads:
        with pytest.raises(NnetError):
            Standardizer.from_meta(bad)
    with pytest.raises(NnetError, match="column 1"):
        Standardizer.fit(np.array([[1.0, np.inf], [2.0, 3.0]]))
    with pytest.raises(NnetError):
        Standardizer.fit(np.zeros(3))


# ----------------------------------------------------------------------------- benchmark


def test_csv_loading_benchmark_smoke(tmp_path):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "csv_loading.py"
    out = subprocess.run(
        [sys.executable, str(script), "--rows", "1000", "--repeat", "1", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "speed ratio" in out.stdout and "peak memory" in out.stdout, out.stdout
    assert "identical to numpy.loadtxt" in out.stdout
