"""A scratch copy of the project: what commands that change or run it (the pipeline tests, the
brought-in models benchmark) work in, so the working tree is never touched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core.settings import ROOT


def copy_project(dest: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied to `dest`, sharing this .venv."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest
