"""Output paths checked before any compute, and arrays written so that no half-written file is ever seen."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["check_output", "write_npz"]


def check_output(path: Path | str, suffix: str | None = None, name: str = "out") -> Path:
    """path, once it is clear that a file can be written there: not a folder, the right suffix, an existing
    file writable, and its folder creatable (the nearest existing ancestor a writable folder). Creates
    nothing. ValueError otherwise."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"{name} {str(path)!r} must end in {suffix}")
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; give a file path")
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


def write_npz(out: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed through a temporary file and a rename; the temporary file never stays."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
