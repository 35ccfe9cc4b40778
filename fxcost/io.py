"""Atomic file output: a failed run leaves no half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fxcost.errors import OutputError


def check_folder(path: str | Path) -> Path:
    """The folder ``path`` will be written in; :class:`OutputError` when it does not exist (checked
    before long work, not after it)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist", hint="create the folder first")
    return folder


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse, before any work, an output fxcost must not write: one of this run's ``inputs`` (the
    model's file, the ONNX file, the baseline), a symbolic link (fxcost replaces the file it
    writes, so it does not write through links: name the file itself), anything but a regular
    file (a FIFO, a device such as /dev/null, a folder), a folder that is missing or not writable,
    or a name longer than the folder allows. Returns the folder."""
    target = Path(path)
    folder = check_folder(target)
    shown = repr(str(target))
    limit = _name_max(folder)
    if len(os.fsencode(target.name)) + _STAGING_EXTRA > limit:
        raise OutputError(f"cannot write {str(target)[:60]!r}...: the name is longer than this file system allows "
                          f"({limit - _STAGING_EXTRA} bytes here)", hint="give a shorter name")
    if target.is_symlink():
        raise OutputError(f"will not write {shown}: it is a symbolic link (to {str(os.readlink(target))!r})",
                          hint="give the path of the file itself; fxcost replaces the file it writes, never a link")
    if target.exists() and not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file (a FIFO, a socket or a device)"
        raise OutputError(f"will not write {shown}: it is {kind}", hint="give a path for a regular file; omit -o to write to stdout")
    for given in inputs:
        if _same_file(target, Path(given)):
            raise OutputError(f"will not write {shown}: it is an input of this run ({str(given)!r})",
                              hint="give the output another name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {shown}: folder {str(folder)!r} is not writable", hint="check its permissions, or write elsewhere")
    return folder


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: bytes the staging file adds to the output's name: "." + name + "." + 8 random characters + ".tmp"
_STAGING_EXTRA = 14


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


#: staging files being written, removed if the process is stopped (SIGTERM) before they land
STAGING: set[str] = set()


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to a staging file beside ``path``, then rename it into place: a failed or
    interrupted run leaves nothing. An existing file keeps its permission bits; a new one gets the
    usual mode (0666 less the umask)."""
    target = Path(path)
    folder = check_output(target)
    mode = (target.stat().st_mode & 0o7777) if target.is_file() else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write {str(target)!r}: {e.strerror or e}", hint="check the path and its permissions") from e
    STAGING.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)  # mkstemp makes the file private
        os.replace(tmp, target)
    except BaseException as e:  # an error, Ctrl-C, SIGTERM: the staging file goes
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {str(target)!r}: {e.strerror or e}", hint="check the path, its permissions and free space") from e
        raise
    finally:
        STAGING.discard(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put it straight back
    os.umask(mask)
    return mask
