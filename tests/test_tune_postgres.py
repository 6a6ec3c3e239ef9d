"""nnet tune against a real PostgreSQL server: two worker processes on one study.

The test starts its own server from Debian's ``postgresql`` package (``.ci/run`` installs it):
``initdb`` and ``pg_ctl start`` in a temporary folder, listening on a Unix socket there only
(no TCP port). PostgreSQL refuses to run as root, so as root (as in CI) the server runs as
the ``postgres`` user the package creates, in a folder handed to that user. The server is
stopped at the end, whatever happened.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("psycopg")

from test_tune import FAST_SPACE, env, fake_mnist  # noqa: E402

from nnet.apps.tune import trial_seed  # noqa: E402

pytestmark = pytest.mark.slow  # about 10 s: a server started and stopped, three processes


def server_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's server programs."""
    found = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d, "pg_ctl").exists()]
    found = [d for d in found if (d / "initdb").exists() and (d / "postgres").exists()]
    return max(found, key=lambda d: int(d.parent.name), default=None) if found else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database on a Unix socket in a temporary folder."""
    bin = server_bin()
    if bin is None:
        pytest.skip(
            "no PostgreSQL server programs in /usr/lib/postgresql/*/bin (Debian's postgresql "
            "package; .ci/run installs it)"
        )
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="nnet-pg-"))  # short: a socket path has 107 bytes
    if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the package's postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no postgres user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{cmd[0]}: {done.stdout}{done.stderr}"

    started = False
    try:
        run(str(bin / "initdb"), "-D", str(data), "-U", "nnet", "-A", "trust", "--no-sync")
        options = f"-k {folder} -c listen_addresses='' -c fsync=off"
        run(str(bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        started = True
        run(str(bin / "createdb"), "-h", str(folder), "-U", "nnet", "study")
        yield f"postgresql+psycopg://nnet@/study?host={folder}"
    finally:
        if started:
            run(str(bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(postgres, tmp_path):
    import optuna

    fake_mnist(tmp_path / "data" / "mnist")
    (tmp_path / "fast.toml").write_text(FAST_SPACE)
    cmd = [
        sys.executable,
        "-m",
        "nnet",
        "tune",
        "--data",
        str(tmp_path / "data"),
        "--no-download",
        "--storage",
        postgres,
        "--study",
        "pg",
        "--space",
        str(tmp_path / "fast.toml"),
        "--val",
        "100",
        "--trials",
        "8",
        "--workers",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="pg", storage=postgres)
    rows = study.get_trials(deepcopy=False)
    ran = [t for t in rows if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(ran) == 8
    others = [t for t in rows if t not in ran]
    assert all(t.state.name == "FAIL" and t.user_attrs.get("surplus") for t in others)
    assert sorted(t.number for t in rows) == list(range(len(rows)))
    assert [t.user_attrs["settings"]["seed"] for t in ran] == [trial_seed(0, t.number) for t in ran]
    assert len({t.user_attrs["worker"] for t in ran}) == 2
    assert f"in {postgres}: 8 trials" in done.stdout  # the surplus ones are not counted
    # nnet train --from-study reads the best trial back from the server
    model = tmp_path / "best.npz"
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnet",
            "train",
            "--from-study",
            f"{postgres}:pg",
            "--data",
            str(tmp_path / "data"),
            "--no-download",
            "--out",
            str(model),
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert train.returncode == 0, train.stderr
    best = max((t for t in ran if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    assert f"trial {best.number} of study 'pg'" in train.stdout
