"""Output files that appear whole or not at all.

Each file is written to a temporary file in its own directory and renamed over the target
only when the whole ``with`` block succeeded. On any error (or Ctrl-C) the temporary files
are removed and a pre-existing target is left untouched, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from nagner.common.errors import InputError


def check_output_path(path: str | Path) -> Path:
    """``path`` as a Path, after checking it can be an output file: its folder exists and it is
    not a folder itself. Raises InputError otherwise (call it before long work)."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory; expected an output file name", path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {str(path.parent)!r} does not exist", path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_outputs(paths: Sequence[str | Path]) -> Iterator[list[TextIO]]:
    """Text files (UTF-8, ``\\n`` line ends) for ``paths``, renamed into place on success.

    Yields one open file per path, in order. The files get the usual permissions
    (0666 minus the umask), not the private ones of a temporary file.
    """
    targets = [check_output_path(path) for path in paths]
    temps: list[Path] = []
    files: list[TextIO] = []
    try:
        for target in targets:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps.append(Path(name))
            files.append(open(fd, "w", encoding="utf-8", newline=""))
        yield files
        for handle in files:
            handle.close()
        mode = 0o666 & ~_umask()
        for temp, target in zip(temps, targets, strict=True):
            os.chmod(temp, mode)
            os.replace(temp, target)
    finally:
        for handle in files:
            handle.close()
        for temp in temps:
            temp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """A fresh hidden sibling folder of ``target`` to fill; when the ``with`` block succeeds it
    replaces ``target`` (an existing one is moved aside, then removed; put back if the swap fails).
    On any error the new folder is removed and ``target`` is left as it was: readers never see half
    a folder. Parents are created; the folder gets the usual permissions, not mkdtemp's private ones."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        os.chmod(partial, 0o777 & ~_umask())
        yield partial
        if not target.exists():
            os.replace(partial, target)
            return
        previous = partial.with_suffix(".previous")
        os.replace(target, previous)
        try:
            os.replace(partial, target)
        except BaseException:
            os.replace(previous, target)
            raise
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # still there only when something failed

