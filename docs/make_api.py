"""Write docs/api.md, the API reference, from the docstrings of isojax's public modules.

Run: python docs/make_api.py          (rewrites docs/api.md)
     python docs/make_api.py --check  (exit 1 if docs/api.md is out of date; the test suite runs this)
A module's public names are its `__all__`; each gets its signature and the first paragraph of its docstring.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import isojax

OUT = Path(__file__).resolve().parent / "api.md"


def public_modules() -> list[str]:
    """Every isojax module (packages included) whose name has no leading underscore, in alphabetical order."""
    names = ["isojax"]
    for info in pkgutil.walk_packages(isojax.__path__, "isojax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def first_paragraph(doc: str | None) -> str:
    doc = inspect.cleandoc(doc or "")
    return doc.split("\n\n")[0].replace("\n", " ").strip()


class _Name:
    """A default value shown by its name (a function's repr holds its memory address, which changes per run)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj) -> str:
    sig = inspect.signature(obj)
    named = lambda p: p.default is not p.empty and callable(p.default) and hasattr(p.default, "__qualname__")
    params = [p.replace(default=_Name(p.default.__qualname__)) if named(p) else p for p in sig.parameters.values()]
    return str(sig.replace(parameters=params))


def entry(module, name: str) -> str:
    obj = getattr(module, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        try:
            signature = _signature(obj)
        except (TypeError, ValueError):
            signature = ""
        kind = "class" if inspect.isclass(obj) else "def"
        return f"- `{kind} {name}{signature}`: {first_paragraph(obj.__doc__)}"
    return f"- `{name}`: a {type(obj).__name__}"


def render() -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand. Shapes are in the",
             "docstrings (`x: [n, d]`). Each module's public names are its `__all__`.", ""]
    for name in public_modules():
        module = importlib.import_module(name)
        lines += [f"## `{name}`", "", first_paragraph(module.__doc__), ""]
        lines += [entry(module, item) for item in getattr(module, "__all__", [])]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docs/make_api.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
