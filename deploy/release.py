"""A release as files: the Bento and its model, exported together so CI jobs (and runs) can pass
them on as artifacts. Importing is idempotent: what the store already holds is kept."""

from __future__ import annotations

import json
from pathlib import Path

import bentoml

BENTO_FILE, MODEL_FILE, MANIFEST = "bento.bento", "model.bentomodel", "release.json"


def export(bento: str | None, model_tag: str, out: Path) -> Path:
    """The Bento (if given) and its model; a model alone passes from training to the build."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (BENTO_FILE, MODEL_FILE, MANIFEST):
        (out / name).unlink(missing_ok=True)
    if bento is not None:
        bentoml.export_bento(bento, str(out / BENTO_FILE))
    bentoml.models.export_model(model_tag, str(out / MODEL_FILE))
    # Written last: a directory with a manifest holds a whole release.
    (out / MANIFEST).write_text(json.dumps({"bento": bento, "model_tag": model_tag}) + "\n")
    return out


def import_(src: Path) -> dict[str, str]:
    manifest = src / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: not a release exported by `make export`")
    release = json.loads(manifest.read_text())
    try:
        bentoml.models.get(release["model_tag"])
    except bentoml.exceptions.NotFound:
        bentoml.models.import_model(str(src / MODEL_FILE))
    if release["bento"] is None:
        return release
    try:
        bentoml.bentos.get(release["bento"])
    except bentoml.exceptions.NotFound:
        bentoml.import_bento(str(src / BENTO_FILE))
    return release
