"""The command lines' argument parser: a bad argument is refused with exit 2 and one line naming
it (argparse's own prints the usage and the error: two lines, or a screenful for subcommands)."""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line: `error: <what>, (<prog> --help)`.
    Subcommands' parsers are of this class too (add_subparsers uses the parser's own class)."""

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())
        self.exit(2, f"error: {one_line} (see {self.prog} --help)\n")
