"""The `prototxt-gen` command.

Generating a network must stay fast and light: nothing here imports torch, onnx or numpy.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

from ..errors import PrototxtGenError, one_line
from .args import PROG
from .bench import cmd_bench
from .convert import cmd_convert
from .generate import cmd_generate, cmd_list, cmd_solver
from .nets import cmd_info, cmd_render


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": cmd_list,
    "info": cmd_info,
    "convert": cmd_convert,
    "bench": cmd_bench,
    "render": cmd_render,
    "solver": cmd_solver,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    previous = _install_handlers()
    try:
        if command:
            return command(argv[1:])
        return cmd_generate(argv)
    except PrototxtGenError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Python's docs recommend.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 143
    except Exception as exc:  # noqa: BLE001 -- the last resort: one line, never a traceback
        return _internal_error(exc)
    finally:
        _restore_handlers(previous)


INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): a bug of ours, not the user's input


DEBUG_VARIABLE = "PROTOTXT_GEN_DEBUG"


def _internal_error(exc: BaseException) -> int:
    """An exception nothing expected: one line naming it and where it came from (the
    traceback with PROTOTXT_GEN_DEBUG=1), exit 70."""
    import traceback
    if os.environ.get(DEBUG_VARIABLE):
        traceback.print_exception(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError)
                                        and "can't allocate memory" in str(exc)):  # torch's
        print(f"{PROG}: error: out of memory: the input asks for more than this machine has",
              file=sys.stderr)
        return 1
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:  # where it was raised and, if that is another library, the last place of ours
        where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} " \
                f"({frames[-1].name})"
        ours = [f for f in frames if os.sep + "prototxt_gen" + os.sep in f.filename]
        if ours and ours[-1] is not frames[-1]:
            where += f", from {os.path.basename(ours[-1].filename)}:{ours[-1].lineno} " \
                     f"({ours[-1].name})"
    detail = one_line(str(exc), 200)
    print(f"{PROG}: internal error: {type(exc).__name__}{': ' + detail if detail else ''}{where}"
          f" -- please report it (set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
    return INTERNAL_ERROR


class _Terminated(BaseException):
    """SIGTERM, raised where the program is, so that files being written are cleaned up as on
    Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {one_line(str(message))}", file=sys.stderr)


def _install_handlers():
    import signal
    import warnings
    previous = (warnings.showwarning, None)
    warnings.showwarning = _show_warning  # a library's warning is one line like ours
    try:
        previous = (previous[0], signal.signal(signal.SIGTERM, _on_sigterm))
    except ValueError:  # not the main thread: leave signals alone
        pass
    return previous


def _restore_handlers(previous) -> None:
    import signal
    import warnings
    warnings.showwarning = previous[0]
    if previous[1] is not None:
        signal.signal(signal.SIGTERM, previous[1])
