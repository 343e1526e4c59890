"""One error path for every command-line tool: a mistake of the user is one line and exit 2.

Errors the user can fix (a bad config value, a missing file, an env the algorithms cannot
drive, a device the machine lacks) are raised as :class:`UsageError` (or a subclass, such as
``ConfigError`` and ``CheckpointError``) anywhere in the package or the tools. Each tool's
``main`` is wrapped by :func:`cli`, which turns them into ``error: <message>`` on stderr and
exit status 2, the status argparse uses for its own usage errors. Anything else is a bug and
keeps its traceback.

This module imports nothing from the package, so every module may import it.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

USAGE_EXIT_CODE = 2
"""Exit status of a usage error (argparse's own convention)."""

Main = TypeVar("Main", bound=Callable[..., Any])


class UsageError(Exception):
    """A mistake in the user's input; the message names the bad value and what is allowed."""


def report(error: BaseException) -> int:
    """Print ``error: <message>`` (one line) to stderr; returns the exit status 2."""
    message = " ".join(str(error).split())  # one line, whatever the message holds
    print(f"error: {message}", file=sys.stderr)
    return USAGE_EXIT_CODE


def cli(main: Main) -> Main:
    """Decorate a tool's ``main(argv)`` so that a :class:`UsageError` becomes :func:`report`."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UsageError as error:
            return report(error)

    return wrapper  # type: ignore[return-value]


MAX_SEED = 2**32 - 1
"""The largest seed numpy (so gymnasium and Lightning's ``seed_everything``) accepts."""


def _int_between(minimum: int, maximum: int | None, wording: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} must be {wording}")
        return value

    return parse


positive_int = _int_between(1, None, "a positive integer (>= 1)")
"""An argparse ``type``: an int > 0 (argparse reports anything else as a usage error)."""
non_negative_int = _int_between(0, None, ">= 0")
"""An argparse ``type``: an int >= 0."""
seed_int = _int_between(0, MAX_SEED, f"a seed in [0, {MAX_SEED}]")
"""An argparse ``type``: a seed numpy accepts."""


def _float_above(minimum: float, inclusive: bool, wording: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value >= minimum if inclusive else value > minimum
        if not (above and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{value} must be a finite number {wording}")
        return value

    return parse


positive_float = _float_above(0.0, False, "> 0")
"""An argparse ``type``: a finite float > 0."""
non_negative_float = _float_above(0.0, True, ">= 0")
"""An argparse ``type``: a finite float >= 0."""
