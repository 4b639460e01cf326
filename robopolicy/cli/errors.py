"""Configuration errors as one line: the entry points build and check their config inside
``config_errors()``; what goes wrong there is the user's to fix, not a crash to debug."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

EXIT_CONFIG_ERROR = 2  # as argparse's usage errors

# what config validation raises: a bad value or key, a missing input, an output that is in the way
CONFIG_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Print ``error: <message>`` on one line and exit with status 2 when the block raises one of
    CONFIG_ERRORS. Only config building/checking belongs in the block: an error raised later,
    by the job itself, keeps its traceback."""
    try:
        yield
    except CONFIG_ERRORS as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
