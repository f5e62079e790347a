"""A release as files: the Bento and its model, exported together so CI jobs (and runs) can pass
them on as artifacts, with a manifest (release.json) holding the sha256 of each.

Import trusts nothing it reads: the manifest must be well formed, each file must match its
sha256, each archive is unpacked (refusing paths that leave it) into a temporary folder where the
model's own files must match the hashes recorded at registration, and only then does anything
enter the store. A model or Bento tag the store already holds with other files is refused; with
the same files it is kept as it is. An imported model is never production: its stage becomes candidate
(only `promote` and deploys move production). Any refusal leaves the store as it was and no
temporary folder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import bentoml
import yaml

from core import modelfile, registry

BENTO_FILE, MODEL_FILE, MANIFEST = "bento.bento", "model.bentomodel", "release.json"
TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]*:[a-z0-9][a-z0-9_.-]*$")


class ReleaseError(ValueError):
    """A release that cannot be imported or exported as it is: nothing was changed."""


def export(bento: str | None, model_tag: str, out: Path) -> Path:
    """The Bento (if given) and its model; a model alone passes from training to the build.
    Written into a temporary folder beside `out`, then moved in, the manifest last: a folder with
    a manifest holds a whole release."""
    registry.verify(registry.get(model_tag))  # never ship files that are not the registered ones
    out = out.resolve()  # BentoML's export reads a relative path from the filesystem's root
    out.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST, BENTO_FILE, MODEL_FILE):
        (out / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
        staging = Path(tmp)
        if bento is not None:
            bentoml.export_bento(bento, str(staging / BENTO_FILE))
        bentoml.models.export_model(model_tag, str(staging / MODEL_FILE))
        names = [BENTO_FILE, MODEL_FILE] if bento is not None else [MODEL_FILE]
        manifest = {
            "bento": bento,
            "model_tag": model_tag,
            "files": {name: modelfile.sha256(staging / name) for name in names},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for name in [*names, MANIFEST]:
            os.replace(staging / name, out / name)
    return out


def read_manifest(src: Path) -> dict[str, Any]:
    """release.json, checked key by key; ReleaseError naming what is wrong."""
    path = src / MANIFEST
    if not path.is_file():
        raise ReleaseError(f"{path}: not found: not a release exported by `make export`")
    try:
        release = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ReleaseError(f"{path}: not JSON: {exc}") from None
    if not isinstance(release, dict):
        raise ReleaseError(f"{path}: not a JSON object")
    tag, bento, files = release.get("model_tag"), release.get("bento"), release.get("files")
    if not isinstance(tag, str) or not TAG.match(tag):
        raise ReleaseError(f"{path}: model_tag: expected name:version, got {tag!r}")
    if bento is not None and (not isinstance(bento, str) or not TAG.match(bento)):
        raise ReleaseError(f"{path}: bento: expected name:version or null, got {bento!r}")
    wanted = {MODEL_FILE} | ({BENTO_FILE} if bento is not None else set())
    if not isinstance(files, dict):
        raise ReleaseError(
            f"{path}: files: missing (a release exported before bentogate recorded hashes: "
            "export it again)"
        )
    if set(files) != wanted or not all(
        isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in files.values()
    ):
        raise ReleaseError(f"{path}: files: expected a sha256 for each of {sorted(wanted)}")
    return release


def _unpack(archive: Path, dest: Path) -> None:
    """Unpack a BentoML archive (tar), refusing members that would land outside `dest`, links
    and devices (tarfile's "data" filter)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ReleaseError(f"{archive.name}: cannot be unpacked: {exc}") from None


def _model_info(folder: Path, what: str) -> dict[str, Any]:
    try:
        info = yaml.safe_load((folder / "model.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReleaseError(f"{what}: model.yaml cannot be read: {exc}") from None
    if not isinstance(info, dict):
        raise ReleaseError(f"{what}: model.yaml is not a mapping")
    for key in ("metadata", "labels"):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise ReleaseError(f"{what}: model.yaml: {key}: expected a mapping")
    return info


def _verified_model(folder: Path, tag: str, what: str) -> dict[str, Any]:
    """The model's model.yaml, once it names `tag` and its files match the hashes it records."""
    info = _model_info(folder, what)
    if f"{info.get('name')}:{info.get('version')}" != tag:
        raise ReleaseError(
            f"{what}: holds model {info.get('name')}:{info.get('version')}, not {tag}"
        )
    try:
        registry.verify_record(tag, (info.get("metadata") or {}).get("files"), folder)
    except registry.RegistryError as exc:
        raise ReleaseError(f"{what}: {exc}") from None
    return info


def _as_candidate(folder: Path, info: dict[str, Any]) -> None:
    """An imported model keeps its stage unless it is production, which becomes candidate."""
    labels = info.setdefault("labels", {}) or {}
    if labels.get("stage") == "production":
        labels["stage"] = "candidate"
        info["labels"] = labels
        (folder / "model.yaml").write_text(yaml.safe_dump(info, sort_keys=False))


def _already_stored(tag: str, files: dict[str, str]) -> bool:
    """Is `tag` in the store already with exactly these files? Refused if with other ones."""
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return False
    if registry.metadata(stored).get("files") != files:
        raise ReleaseError(
            f"model {tag} is already in the store with other files: a tag names one model, "
            "refused (delete the stored one first if it is the wrong one)"
        )
    return True


def _bento_digest(folder: Path) -> str:
    """sha256 over a Bento's files by path, its bundled models aside: each of those is checked
    by its own recorded hashes (and the store keeps models apart from Bentos)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if rel.parts[0] == "models":
            continue
        digest.update(f"{rel.as_posix()}\0{modelfile.sha256(path)}\n".encode())
    return digest.hexdigest()


def _bento_stored(bento: str, bento_dir: Path) -> bool:
    """Is `bento` in the store already with exactly these files? Refused if with other ones."""
    try:
        stored = bentoml.bentos.get(bento)
    except bentoml.exceptions.NotFound:
        return False
    if _bento_digest(Path(stored.path)) != _bento_digest(bento_dir):
        raise ReleaseError(
            f"Bento {bento} is already in the store with other files: a tag names one Bento, "
            "refused (delete the stored one first if it is the wrong one)"
        )
    return True


def import_(src: Path) -> dict[str, Any]:
    release = read_manifest(src)
    for name, digest in release["files"].items():
        path = src / name
        if not path.is_file():
            raise ReleaseError(f"{path}: missing from the release")
        if modelfile.sha256(path) != digest:
            raise ReleaseError(f"{path}: does not match the sha256 in {MANIFEST}: refused")
    tag, bento = release["model_tag"], release["bento"]
    with tempfile.TemporaryDirectory(prefix="bentogate-import-") as tmp:
        model_dir = Path(tmp) / "model"
        _unpack(src / MODEL_FILE, model_dir)
        info = _verified_model(model_dir, tag, MODEL_FILE)
        files = info["metadata"]["files"]
        bento_dir = None
        if bento is not None:
            bento_dir = Path(tmp) / "bento"
            _unpack(src / BENTO_FILE, bento_dir)
            name, version = tag.split(":")
            bundled = bento_dir / "models" / name / version
            if not bundled.is_dir():
                raise ReleaseError(f"{BENTO_FILE}: does not bundle model {tag}")
            bundled_info = _verified_model(bundled, tag, f"{BENTO_FILE} (its {tag})")
            if bundled_info["metadata"]["files"] != files:
                raise ReleaseError(f"{BENTO_FILE}: bundles other files of {tag} than {MODEL_FILE}")
            _as_candidate(bundled, bundled_info)
        model_stored = _already_stored(tag, files)
        bento_stored = bento_dir is None or _bento_stored(str(bento), bento_dir)
        # Nothing is written to the store before every check above has passed.
        if not model_stored:
            _as_candidate(model_dir, info)
            try:
                bentoml.models.import_model(str(model_dir), input_format="folder")
            except Exception as exc:  # BentoML reads the rest of model.yaml: its words, one line
                raise ReleaseError(f"{MODEL_FILE}: BentoML refused it: {exc}") from None
        if not bento_stored and bento_dir is not None:
            try:
                bentoml.import_bento(str(bento_dir), input_format="folder")
            except Exception:
                if not model_stored:  # leave the store as it was
                    bentoml.models.delete(tag)
                raise
    return release
