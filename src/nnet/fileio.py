"""Writing files safely: every file nnet writes appears whole or not at all, and only ever
replaces a regular file.

:func:`atomic_write` writes to a temporary file in the destination's folder, flushes it to
disk, and renames it onto the destination (an atomic operation on POSIX and Windows), so a
crash, a kill -9 or a full disk at any moment leaves the previous file intact.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from nnet.errors import NnetError


def new_file_mode(path: Path) -> int:
    """The permissions a new file at ``path`` would get: those of the file it replaces, or
    0o666 less the process umask (``tempfile.mkstemp`` alone would make it 0o600)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def check_output(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file nnet may write, checked before any work is done: NnetError unless
    it is a regular file or nothing (never a folder, device, FIFO, socket or symbolic link,
    which a rename would replace), its name fits the file system, and its folder exists and
    can really be written (a temporary file is made there and removed)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise NnetError(f"cannot write {path}: {exc.strerror}.") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise NnetError(f"{path} is a symbolic link; give the path of a regular file to write.")
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise NnetError(f"{path} is a folder; give a file name.")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise NnetError(f"{path} is not a regular file (a device, FIFO or socket); nnet only "
                        "writes regular files.")  # fmt: skip
    if not folder.is_dir():
        raise NnetError(f"the folder {folder} does not exist; create it first.")
    try:
        too_long = len(os.fsencode(path.name)) > os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        too_long = False
    if too_long:
        raise NnetError(f"the file name {path.name[:40]}... is longer than the file system allows.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nnet-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise NnetError(f"cannot write in the folder {folder}: {exc.strerror}.") from None
    return path


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success rename it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left exactly as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NnetError(f"cannot write {path}: the folder {folder} does not exist.")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise NnetError(f"{path} is not a regular file; nnet does not replace it.")
    # the name of the temporary file starts with the target's, shortened to leave room
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, new_file_mode(path))
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
