"""Output files: the one copy of atomic writes, strict JSON, folder locks and write checks.

A reader sees the previous file or the new one, never a partial one: data goes to a temporary
file in the same folder, is flushed to disk, and is renamed over the target. If anything fails
the temporary file is removed and the previous file is left as it was. Files get the usual
permissions (``0o666`` less the umask), as ``open`` would give them.

A run that writes into a folder holds :func:`lock_folder` on it, so that two runs cannot mix
their results; :func:`check_writable_folder` tells a user before any compute that the results
could not be written.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FolderLocked",
    "LOCK_NAME",
    "check_writable_folder",
    "json_text",
    "lock_folder",
    "remove_stale_temporaries",
    "write_atomic",
    "write_atomic_bytes",
    "write_atomic_with",
]

#: The lock file :func:`lock_folder` keeps in a folder while a run writes there.
LOCK_NAME = ".bioplastic.lock"


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


def write_atomic_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary binary file, then rename it to ``path``.

    The file gets mode ``0o666 & ~umask`` (``tempfile.mkstemp`` alone would leave ``0o600``).

    Raises:
        OSError: as ``open``/``write`` do; a full disk (``ENOSPC``) gives a message naming
            ``path`` and saying that the previous file was kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC, f"no space left on the device to write {path} (previous file kept)"
            ) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_atomic_with(path, lambda handle: handle.write(data))


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic_bytes(path, text.encode("utf-8"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = 1) -> str:
    """``data`` as strict JSON text (with a final newline): NaN and infinities become ``null``.

    ``json.dumps`` would write bare ``NaN``/``Infinity``, which JSON readers other than
    Python's reject.
    """
    return json.dumps(_finite(data), indent=indent, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------ folders
#: Folders this process holds a lock on, with the nesting depth (the lock is re-entrant).
_HELD: dict[str, int] = {}


class FolderLocked(OSError):
    """Another process holds :func:`lock_folder` on the folder."""


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "another process"


@contextmanager
def lock_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) while the block runs.

    The lock is ``fcntl.flock`` on ``folder/.bioplastic.lock`` (which records the holder's
    pid); the operating system releases it when the process ends, even after a kill, so a
    stale lock file never blocks. It is re-entrant within a process. Where ``fcntl`` does not
    exist (Windows) nothing is locked.

    Raises:
        FolderLocked: another process holds the lock (the message names the folder and pid).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    key = str(folder.resolve())
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield folder
        return
    if key in _HELD:  # this process holds it already (a CLI around a library call)
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLocked(
                errno.EBUSY,
                f"{folder} is in use by another bioplastic run ({_holder(lock)}); wait for it "
                "to finish or write to another folder",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = 1
        try:
            yield folder
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) a killed writer left under ``folder``.

    Call it only while holding :func:`lock_folder` on ``folder`` (no live writer). Returns the
    files removed.
    """
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_writable_folder(folder: str | os.PathLike[str], option: str = "--out") -> None:
    """Make sure results can be written to ``folder`` before any work starts.

    Creates and removes a probe file in ``folder`` or, when it does not exist yet, in its
    nearest existing ancestor (where it will be created): nothing is left behind.

    Raises:
        ValueError: one line naming ``option`` and the folder: it is a file, under a file,
            read-only, or otherwise not writable (the operating system's reason).
    """
    folder = Path(folder)
    if str(folder) == "":
        raise ValueError(f"{option} must name a folder, got an empty path")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder} is not a folder (a file)")
    probe_in = folder.absolute()
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ValueError(f"{option} {folder} is not writable (a path under a file)")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_in, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"{option} {folder} is not writable ({reason})") from None
