"""The command lines' shared front: a bad argument or a malformed BENTOGATE_* variable is refused
with exit 2 and one line naming it (argparse's own prints the usage and the error: two lines, or a
screenful for subcommands; pydantic's, a traceback)."""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec

from core.settings import TAG_PATTERN, SettingsError

P = ParamSpec("P")


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line: `error: <what>, (<prog> --help)`.
    Subcommands' parsers are of this class too (add_subparsers uses the parser's own class)."""

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())
        self.exit(2, f"error: {one_line} (see {self.prog} --help)\n")


def refuses_bad_settings(main: Callable[P, int]) -> Callable[P, int]:
    """A command line's main: a malformed BENTOGATE_* variable is exit 2 and a line naming it,
    never a traceback (settings are read as the parser is built, before any other check)."""

    @functools.wraps(main)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except SettingsError as exc:
            for line in str(exc).splitlines():
                print(f"error: {line}", file=sys.stderr)
            return 2

    return guarded


def model_tag(text: str) -> str:
    """argparse type: a model tag, name[:version]."""
    if not re.match(TAG_PATTERN, text):
        raise argparse.ArgumentTypeError(f"expected a model tag (name:version), got {text!r}")
    return text


def number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], float]:
    """argparse type: a finite `kind` in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"expected {low:g} to {high:g}, got {text}")
        return value

    return parse
