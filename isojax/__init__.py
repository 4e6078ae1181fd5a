"""isojax: the theory and measurement of isotropy in language-model embeddings on numeric data.

The package has three layers (see README.md, "Layout"):
- the math: `head`, `attention`, `transformer`, `distributions`, `cluster`, `isotropy/`, `theory/`;
- sources and models: `data/`, `models/`, `pretrained/`, `forecast/`;
- the run infrastructure `runs/` (keys, results tables, sweeps), `stats`, `plots` and the command `cli/`.

Importing isojax changes nothing outside the package (no environment variable, no JAX setting): entry points
call `isojax.runs.runtime.configure_xla()`, and so should a notebook (see that module).
"""

import importlib as _importlib
import warnings as _warnings

__version__ = "0.1.0"

# the modules of the flat layout before 0.2, kept one release as aliases of their new homes
_MOVED = {"keys": "isojax.runs.keys", "results": "isojax.runs.results", "sweep": "isojax.runs.sweep"}


def __getattr__(name: str):
    if name in _MOVED:
        _warnings.warn(f"isojax.{name} moved to {_MOVED[name]}; the old name goes in the next release",
                       DeprecationWarning, stacklevel=2)
        return _importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'isojax' has no attribute {name!r}")
