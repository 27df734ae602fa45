"""Package names that load on first use (PEP 562), so importing a package stays cheap.

    __getattr__ = lazy_exports(__name__, {"NagNerModel": "nagner.modeling.modeling", ...})

(`nagner.peft` has its own copy of these few lines: it imports nothing else of the project.)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module path)
    on first access of ``name`` and keeps the value in the package's namespace."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
