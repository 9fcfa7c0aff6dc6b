"""The CLI's error boundary: no command prints a traceback for a user error (issue #17).

`run_guarded(command, run)` runs one command and turns what escapes it into an exit status and at most one
line on stderr, `meterstream <command>: error: <reason>`:
- user errors (a bad value, a missing file, a setting that does not parse, a statement ClickHouse refuses,
  the catalog, the errors commands raise on purpose as RuntimeError) -> exit 2;
- the reader of stdout went away (`meterstream dlq list | head -1`) -> exit 0, quietly;
- Ctrl-C -> exit 130, quietly;
- anything else (a bug) -> exit 1, one line naming the exception, and how to see the traceback:
  METERSTREAM_DEBUG=1 lets every exception through with its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

USER_ERROR = 2
UNEXPECTED = 1
INTERRUPTED = 130
DEBUG_VARIABLE = "METERSTREAM_DEBUG"


def one_line(text: str) -> str:
    """Whitespace (line breaks of a ClickHouse message, say) collapsed into single spaces."""
    return " ".join(str(text).split())


def describe(exc: BaseException) -> str:
    """The reason, as the user should read it."""
    errors = getattr(exc, "errors", None)
    title = getattr(exc, "title", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":  # pydantic: one `field: message` per error
        parts = []
        for err in errors():
            loc = ".".join(str(x) for x in err.get("loc", ())) or "value"
            if title == "Settings":  # a setting comes from the environment: name the variable
                loc = f"METERSTREAM_{loc.upper()}"
            got = err.get("input")
            parts.append(f"{loc}: {err.get('msg')}" + (f" (got {got!r})" if isinstance(got, str | int) else ""))
        return one_line("; ".join(parts))
    if isinstance(exc, OSError) and exc.filename is not None:
        return one_line(f"{exc.strerror or exc}: {exc.filename}")
    return one_line(str(exc) or type(exc).__name__)


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, ValueError | RuntimeError | FileNotFoundError | IsADirectoryError
                  | NotADirectoryError | PermissionError | FileExistsError):  # fmt: skip
        return True
    # ClickHouse refused the statement (bad SQL, unknown table, access denied): the user's to fix
    return type(exc).__name__ == "DatabaseError" and type(exc).__module__.startswith("clickhouse_connect")


def _quiet_stdout() -> None:
    """stdout's reader is gone: send what is left to /dev/null, so the exit's flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_guarded(command: str, run: Callable[[], int]) -> int:
    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        code = run()
        sys.stdout.flush()
        return code
    try:
        code = run()
        sys.stdout.flush()  # inside the boundary: a reader that left shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return INTERRUPTED
    except SystemExit:
        raise
    except Exception as exc:  # the boundary: every exception becomes one line
        if is_user_error(exc):
            print(f"meterstream {command}: error: {describe(exc)}", file=sys.stderr)
            return USER_ERROR
        print(f"meterstream {command}: error: {type(exc).__name__}: {describe(exc)} "
              f"(run with {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)  # fmt: skip
        return UNEXPECTED
