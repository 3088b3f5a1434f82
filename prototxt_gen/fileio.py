"""Writing files so that a failure never leaves a half-written output behind."""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
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
    renamed over `path` when the block ends without an exception (SIGTERM included, which the
    CLI turns into one), else removed.

    Only a regular file is replaced: a symbolic link, FIFO, device or directory at `path` is
    refused rather than replaced by a file (as root, `-o /dev/null` would otherwise replace
    the system's)."""
    mode = check_target(path)
    path = Path(path)
    # The name is chosen before the file exists, so that a SIGTERM raised at any point after
    # (even inside the call that creates it) finds a name to remove.
    tmp, created = "", False
    try:
        for _ in range(100):
            tmp = os.fspath(path.parent / f".{path.name[:64]}.{secrets.token_hex(5)}.part")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:  # someone else's file: try another name
                tmp = ""
                continue
            except OSError as exc:
                tmp = ""
                raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
            created = True
            break
        if not created:
            raise OutputError(f"{path}: cannot write: no free temporary name beside it")
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
        raise


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[str]]:
    """atomic_path for files that belong together (a module and its weights): every target is
    checked before anything is written, and all are renamed into place only when the block
    succeeds, so a failure leaves none of them."""
    with contextlib.ExitStack() as stack:  # a target refused on entry unwinds the others
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def check_target(path: str | os.PathLike) -> int:
    """The mode a new file at `path` gets (an existing file's own); OutputError for a target
    that is not a regular file or a name the system refuses."""
    text = os.fspath(path)
    if not text or text.endswith(("/", os.sep)):
        raise OutputError(f"{text or repr(text)}: not a file name")
    name = os.path.basename(text)
    if len(name.encode("utf-8", "surrogateescape")) > 255 - len(".part") - 10:
        raise OutputError(f"{text[:100]}...: file name too long")
    try:
        st = os.lstat(text)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        if not os.path.isdir(os.path.dirname(text) or "."):
            raise OutputError(f"{text}: cannot write: No such file or directory") from None
        return 0o666 & ~umask
    except OSError as exc:
        raise OutputError(f"{text}: cannot write: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{text}: is a directory")
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{text}: is a symbolic link; not replaced (write to its target, or "
                          "remove the link)")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{text}: is not a regular file (a device, FIFO or socket); not "
                          "replaced")
    return st.st_mode & 0o777


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
