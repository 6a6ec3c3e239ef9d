"""--threads: the count asked for, the one auto chooses, and what limited() applies."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from nnet.apps.cli import main
from nnet.errors import NnetError
from nnet.training import threads
from nnet.training.threads import auto_threads, check_threads, idle_cores, limited, resolve


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), (" AUTO ", "auto"), ("3", 3), (1, 1), ("12", 12)],
)
def test_check_threads_takes_numbers_and_auto(value, expected):
    assert check_threads(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "", 0, True])
def test_check_threads_refuses_the_rest_in_one_line(value):
    with pytest.raises(NnetError, match=r"^--threads must be a whole number >= 1 or auto; got "):
        check_threads(value)


def test_nnet_threads_is_the_default(monkeypatch):
    monkeypatch.setenv("NNET_THREADS", "3")
    assert check_threads(None) == 3 and resolve(None) == 3
    monkeypatch.setenv("NNET_THREADS", "none")
    with pytest.raises(NnetError, match="^NNET_THREADS must be"):
        resolve(None)
    monkeypatch.delenv("NNET_THREADS")
    assert check_threads(None) == "auto"


def ticks(*samples):
    """A fake /proc/stat reader giving (busy, total) jiffies, one sample per call."""
    it = iter(samples)
    return lambda cpus: next(it)


@pytest.mark.parametrize(
    ("busy", "expected"),
    [(0, 2), (5, 2), (45, 2), (55, 1), (100, 1), (200, 1)],  # of 200 jiffies on 2 cores
)
def test_auto_leaves_the_cores_others_keep_busy(monkeypatch, busy, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "_cpu_ticks", ticks((1000, 5000), (1000 + busy, 5200)))
    assert idle_cores(look=0) == pytest.approx(2 * (1 - busy / 200))
    monkeypatch.setattr(threads, "_cpu_ticks", ticks((1000, 5000), (1000 + busy, 5200)))
    assert auto_threads(look=0) == expected


def test_auto_without_proc_stat_takes_every_core(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_cpu_ticks", lambda cpus: None)
    assert auto_threads(look=0) == 4


def test_proc_stat_is_read_for_this_process_cores():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    busy, total = threads._cpu_ticks(os.sched_getaffinity(0))
    assert 0 <= busy <= total and total > 0
    idle = idle_cores(look=0.05)
    assert idle is not None and -0.01 <= idle <= len(os.sched_getaffinity(0)) + 0.01


def blas_threads():
    return {lib["internal_api"]: lib["num_threads"] for lib in threadpool_info()}


def test_limited_sets_the_blas_and_numba_threads_and_puts_them_back(monkeypatch):
    numba = pytest.importorskip("numba")
    monkeypatch.delenv("NNET_THREADS", raising=False)
    np.ones((2, 2)) @ np.ones((2, 2))  # the BLAS is loaded
    before, numba_before = blas_threads(), numba.get_num_threads()
    assert before, "NumPy's BLAS is not visible to threadpoolctl"
    with limited(1) as n:
        assert n == 1
        assert set(blas_threads().values()) == {1}
        assert numba.get_num_threads() == 1
        assert os.environ["NNET_THREADS"] == "1"  # for the kernels, if they load now
    after = blas_threads()  # (a library loaded meanwhile, such as OpenMP, may be listed too)
    assert {k: after[k] for k in before} == before and numba.get_num_threads() == numba_before
    assert "NNET_THREADS" not in os.environ


def test_train_threads_flag(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(60, 3))
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[x, (x[:, 0] > 0).astype(int)], delimiter=",", header="a,b,c,label",
               comments="", fmt="%.6g")  # fmt: skip
    args = ["train", "--data-file", str(data), "--target", "label", "--epochs", "1",
            "--out", str(tmp_path / "m.npz"), "--quiet", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    assert (tmp_path / "m.npz").exists()
    assert "NNET_THREADS" not in os.environ or os.environ["NNET_THREADS"] != "1"
    with pytest.raises(SystemExit) as exc:
        main([*args[:-1], "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nnet train: error: argument --threads: --threads must be")


def test_train_json_says_which_threads_it_used(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NNET_THREADS", raising=False)
    x = np.random.default_rng(1).normal(size=(80, 3))
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[x, (x[:, 1] > 0).astype(int)], delimiter=",", header="a,b,c,label",
               comments="", fmt="%.6g")  # fmt: skip
    base = ["train", "--data-file", str(data), "--target", "label", "--epochs", "2",
            "--out", str(tmp_path / "m.npz"), "--quiet", "--json"]  # fmt: skip
    assert main(base) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= summary["threads"] <= threads.usable_cores()
    assert main([*base, "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["threads"] == 1


def test_a_checkpoint_records_its_threads_and_resume_computes_with_them(tmp_path, capsys,
                                                                        monkeypatch):  # fmt: skip
    """The thread count decides the last bits of some products, so --resume takes the
    checkpoint's (unless told otherwise): the resumed run ends as the uninterrupted one."""
    from nnet.files.checkpoint import read_checkpoint

    monkeypatch.delenv("NNET_THREADS", raising=False)
    x = np.random.default_rng(2).normal(size=(120, 3))
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[x, (x[:, 2] > 0).astype(int)], delimiter=",", header="a,b,c,label",
               comments="", fmt="%.6g")  # fmt: skip
    ckpt = tmp_path / "c.npz"
    base = ["train", "--data-file", str(data), "--target", "label", "--quiet", "--json"]
    first = [*base, "--epochs", "1", "--threads", "1", "--checkpoint", str(ckpt),
             "--out", str(tmp_path / "a.npz")]  # fmt: skip
    assert main(first) == 0
    capsys.readouterr()
    assert read_checkpoint(ckpt).threads == 1
    # the checkpoint says 1 thread: the resumed run computes with 1, not with auto's choice
    monkeypatch.setattr("nnet.apps.cli.resolve", lambda value: pytest.fail("auto was asked"))
    assert main([*base[:-2], "--resume", str(ckpt), "--quiet", "--json",
                 "--out", str(tmp_path / "b.npz")]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["threads"] == 1
