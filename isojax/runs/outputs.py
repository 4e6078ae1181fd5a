"""Output paths checked before any compute, and files written so that no half-written file is ever seen and
nothing the user did not name is touched.

- `check_output`: the path named by the user can be written (checked before any compute; creates nothing).
- `check_derived`: a file isojax derives from it (a sidecar, a figure) may be replaced only if isojax wrote it,
  or if the user passes --force.
- `staged`: every file of one output is written to a temporary file with a unique name in its target folder
  (O_EXCL: never one of the user's files) and renamed into place only once all are written; on any failure or
  interrupt (ENOSPC, Ctrl-C, SIGTERM) the temporary files are removed and the targets are as they were. Files
  get the permissions the umask gives a new file (never the temporary file's 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["check_output", "check_derived", "new_file_mode", "temporary_beside", "staged", "write_npz"]


def check_output(path: Path | str, suffix: str | None = None, name: str = "out") -> Path:
    """path, once it is clear that a file can be written there: not a folder, the right suffix, an existing
    file writable, and its folder creatable (the nearest existing ancestor a writable folder). Creates
    nothing. ValueError otherwise."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"{name} {str(path)!r} must end in {suffix}")
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; give a file path")
    if path.exists() and not path.is_file():
        raise ValueError(f"{name} {str(path)!r} exists and is not a regular file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} exists and is not writable")
    ancestor = path.parent.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(ancestor)!r} is not writable")
    return path


def check_derived(path: Path | str, ours: bool, force: bool = False, what: str = "out") -> Path:
    """A file derived from the user's --out (a sidecar, a figure): refused (ValueError) if it exists, was not
    written by isojax (`ours` False) and `force` is not set; also checked as `check_output`."""
    path = check_output(path, name=f"{what}'s derived file")
    if path.exists() and not ours and not force:
        raise ValueError(f"{str(path)!r} exists and was not written by isojax: the output {what} would replace it; "
                         "move it away or pass --force")
    return path


def new_file_mode() -> int:
    """The permissions a new file gets under the current umask (e.g. 0o644 under umask 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_beside(path: Path | str) -> Path:
    """A new, empty file with a unique name (created with O_EXCL) in path's folder, e.g. `.t.csv.k2j9.tmp`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def staged(*paths: Path | str) -> Iterator[list[Path]]:
    """Temporary files beside each of `paths`, to be written by the block; when it ends normally each is
    fsynced, given `new_file_mode()` and renamed onto its path; when it raises (anything, KeyboardInterrupt
    included) every temporary file is removed and no path is touched."""
    temps: list[Path] = []
    try:
        for path in paths:
            temps.append(temporary_beside(path))
        yield temps
        mode = new_file_mode()
        for tmp in temps:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, mode)
        for tmp, path in zip(temps, paths, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def write_npz(out: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed through a temporary file and a rename (`staged`); the temporary file never stays."""
    with staged(out) as (tmp,), open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
