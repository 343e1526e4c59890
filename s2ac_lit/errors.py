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


def _int_at_least(minimum: int, wording: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {wording}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer (>= 1)")
"""An argparse ``type``: an int > 0 (argparse reports anything else as a usage error)."""
non_negative_int = _int_at_least(0, ">= 0")
"""An argparse ``type``: an int >= 0."""


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number > 0")
    return value
