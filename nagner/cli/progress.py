"""Progress bars for long CLI runs: on stderr, only when stderr is a terminal and not switched off."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(enabled: bool, total: int | None = None, unit: str = "sentences", desc: str | None = None) -> Any:
    """A tqdm bar on stderr, or None when ``enabled`` is False or stderr is not a terminal (logs,
    pipes and CI stay clean). Call ``close()`` on it when done."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=f" {unit}", desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)
