"""Writing files so that a failure never leaves a half-written output behind."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import NetError, OutputError


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: readers see
    the old file or the complete new one, never a partial one."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to stream into; it replaces `path` only when the block ends without an
    exception (and keeps the old file's permissions)."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {exc.strerror}") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside `path` for the block to write (and check) a file at; it is
    renamed over `path` when the block ends without an exception, else removed."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
        raise


def open_input(path: str | os.PathLike, what: str = "file", error: type = NetError,
               missing: str | None = None) -> BinaryIO:
    """An input file opened for binary reading, with one-line errors (of class `error`) for the
    usual mistakes: "no such {missing or what}", "is a directory, not a {what}"."""
    path = Path(path)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise error(f"{path}: no such {missing or what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None


def read_input(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a non-empty input file (see open_input)."""
    with open_input(path, what) as f:
        try:
            data = f.read()
        except OSError as exc:  # e.g. EISDIR on systems where open() succeeds
            raise NetError(f"{path}: cannot read: {exc.strerror}") from None
    if not data:
        raise NetError(f"{path}: the file is empty")
    return data
