"""Releases pass between CI jobs and runs as files: `deploy import` takes only what `deploy
export` wrote, byte for byte, never makes a production model, and refuses anything else with
exit 2 and one line, leaving the store and the temporary folder as they were."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path

import bentoml
import pytest
import yaml

from core import modelfile
from deploy import release
from deploy.__main__ import main as deploy_main
from tests.conftest import copy_project, make, run_cli
from tests.fixtures.variants import Touch


@pytest.fixture(scope="module")
def exported(production_tag, tmp_path_factory) -> Path:
    return release.export(None, production_tag, tmp_path_factory.mktemp("release") / "release")


@pytest.fixture
def fresh(tmp_path) -> dict[str, str]:
    """A fresh store, and a temporary folder of its own to show nothing is left in it."""
    (tmp_path / "tmp").mkdir()
    return {"BENTOML_HOME": str(tmp_path / "store"), "TMPDIR": str(tmp_path / "tmp")}


def deploy(*args: str, env: dict[str, str]):
    return run_cli("-m", "deploy", *args, env=env, timeout=120)


def stored(env: dict[str, str]) -> list[dict]:
    return [
        yaml.safe_load(p.read_text())
        for p in Path(env["BENTOML_HOME"]).glob("models/*/*/model.yaml")
    ]


def copy_release(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in (release.MODEL_FILE, release.MANIFEST):
        (dest / name).write_bytes((src / name).read_bytes())
    return dest


def rewrite_model(folder: Path, change, *, rehash: bool) -> None:
    """Unpack the release's model archive, `change` its files, pack it again; with `rehash`, also
    rewrite every hash that vouches for them (as an attacker holding the whole release would)."""
    archive = folder / release.MODEL_FILE
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    members = {name.removeprefix("./"): data for name, data in members.items()}
    change(members)
    if rehash:
        info = yaml.safe_load(members["model.yaml"])
        info["metadata"]["files"] = {
            name: hashlib.sha256(data).hexdigest()
            for name, data in members.items()
            if name != "model.yaml"
        }
        members["model.yaml"] = yaml.safe_dump(info).encode()
    with tarfile.open(archive, "w:xz") as tar:
        for name, data in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    if rehash:
        manifest = json.loads((folder / release.MANIFEST).read_text())
        manifest["files"][release.MODEL_FILE] = modelfile.sha256(archive)
        (folder / release.MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def import_here(tmp_path, monkeypatch, capsys):
    """`deploy import` in this process, against the session's store (which holds the exported
    model as production): returns (exit code, stderr, the store's models before and after).
    Temporary folders go to a folder of the test's own, to show none is left."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def run(folder: Path):
        before = store_state()
        code = deploy_main(["import", str(folder)])
        assert list(scratch.iterdir()) == []
        return code, capsys.readouterr().err, before, store_state()

    return run


def store_state() -> list[tuple[str, str, str]]:
    return sorted(
        (str(m.tag), m.info.labels.get("stage", ""), json.dumps(m.info.metadata.get("files")))
        for m in bentoml.models.list()
    )


def refused(outcome, says: str) -> None:
    code, stderr, before, after = outcome
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [stderr.strip()]  # one line
    assert says in stderr
    assert after == before


def test_an_exported_model_imports_as_a_candidate_never_as_production(
    exported, production_tag, fresh
):
    manifest = json.loads((exported / release.MANIFEST).read_text())
    assert set(manifest["files"]) == {release.MODEL_FILE}

    result = deploy("import", str(exported), env=fresh)

    assert result.returncode == 0, result.stderr
    (info,) = stored(fresh)
    assert f"{info['name']}:{info['version']}" == production_tag
    assert info["labels"]["stage"] == "candidate"  # it was production where it came from
    assert list(Path(fresh["TMPDIR"]).iterdir()) == []


def test_importing_twice_keeps_one_model_and_only_an_explicit_promotion_makes_production(
    exported, fresh
):
    assert deploy("import", str(exported), env=fresh).returncode == 0
    again = deploy("import", str(exported), "--promote", env=fresh)

    assert again.returncode == 0, again.stderr
    assert "is now production" in again.stdout
    assert [m["labels"]["stage"] for m in stored(fresh)] == ["production"]


def test_a_release_file_that_does_not_match_its_manifest_is_refused(
    exported, import_here, tmp_path
):
    folder = copy_release(exported, tmp_path / "tampered")
    rewrite_model(folder, lambda files: files.update({"extra.txt": b"x"}), rehash=False)

    refused(import_here(folder), "model.bentomodel: does not match the sha256 in release.json")


@pytest.mark.parametrize("name", ["compiled.npz", "model.skops"])
def test_a_model_file_replaced_by_a_payload_is_refused_unrun_even_with_a_rewritten_manifest(
    exported, import_here, tmp_path, name
):
    folder = copy_release(exported, tmp_path / "tampered")
    marker = tmp_path / "ran"
    payload = pickle.dumps(Touch(marker))

    def replace(files):
        files[name] = payload

    rewrite_model(folder, replace, rehash=False)
    manifest = json.loads((folder / release.MANIFEST).read_text())
    manifest["files"][release.MODEL_FILE] = modelfile.sha256(folder / release.MODEL_FILE)
    (folder / release.MANIFEST).write_text(json.dumps(manifest))

    refused(import_here(folder), f"{name} does not match the sha256 recorded for it")
    assert not marker.exists()


def test_a_tag_already_stored_with_other_files_is_refused(exported, import_here, tmp_path):
    # The session's store holds the exported model; this release says other files are that tag,
    # and vouches for them all the way down.
    folder = copy_release(exported, tmp_path / "other")
    rewrite_model(folder, lambda files: files.update({"notes.txt": b"other"}), rehash=True)

    refused(import_here(folder), "is already in the store with other files")


def _traversal(folder: Path) -> None:
    with tarfile.open(folder / release.MODEL_FILE, "w:xz") as tar:
        entry = tarfile.TarInfo("../escaped")
        tar.addfile(entry, io.BytesIO(b""))
    manifest = json.loads((folder / release.MANIFEST).read_text())
    manifest["files"][release.MODEL_FILE] = modelfile.sha256(folder / release.MODEL_FILE)
    (folder / release.MANIFEST).write_text(json.dumps(manifest))


def _edit_manifest(change):
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / release.MANIFEST).read_text())
        change(manifest)
        (folder / release.MANIFEST).write_text(json.dumps(manifest))

    return edit


def _model_yaml(**changes):
    """An edit of the model's model.yaml by someone who rewrites every hash after it."""

    def edit(folder: Path) -> None:
        def change(files):
            info = yaml.safe_load(files["model.yaml"])
            info.update(changes)
            files["model.yaml"] = yaml.safe_dump(info).encode()

        rewrite_model(folder, change, rehash=True)

    return edit


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda d: (d / release.MANIFEST).write_text("{not json"), "release.json: not JSON"),
        (_edit_manifest(lambda m: m.pop("model_tag")), "model_tag: expected name:version"),
        (_edit_manifest(lambda m: m.pop("files")), "files: missing"),
        (_edit_manifest(lambda m: m.update(bento="x")), "bento: expected name:version or null"),
        (lambda d: (d / release.MODEL_FILE).unlink(), "model.bentomodel: missing"),
        (_traversal, "model.bentomodel: cannot be unpacked"),
        (lambda d: (d / release.MANIFEST).write_text("[" * 100_000), "release.json: not JSON"),
        (_model_yaml(labels=[]), "model.yaml: labels: expected a mapping"),
    ],
    ids=[
        "not-json",
        "no-tag",
        "no-hashes",
        "bad-bento",
        "no-model",
        "path-traversal",
        "nested-json",
        "labels-not-a-mapping",
    ],
)
def test_a_bad_release_is_refused_with_exit_2_and_one_line(
    exported, import_here, tmp_path, spoil, says
):
    folder = copy_release(exported, tmp_path / "bad")
    spoil(folder)

    refused(import_here(folder), says)
    assert not (tmp_path / "escaped").exists()


def test_the_command_refuses_a_bad_release_with_exit_2_and_one_line(exported, fresh, tmp_path):
    folder = copy_release(exported, tmp_path / "bad")
    (folder / release.MANIFEST).write_text("{not json")

    result = deploy("import", str(folder), env=fresh)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert stored(fresh) == [] and list(Path(fresh["TMPDIR"]).iterdir()) == []


@pytest.fixture(scope="module")
def full_release(production_tag, tmp_path_factory) -> Path:
    """A Bento of the session's production model built by `make build` (in a copy of the project:
    the working tree's build/ is the developer's), exported with its model."""
    repo = copy_project(tmp_path_factory.mktemp("repo"))
    result = make(repo, "build", env={})
    assert result.returncode == 0, result.stderr
    bento = (repo / "build" / "bento-tag").read_text().strip()
    return release.export(bento, production_tag, tmp_path_factory.mktemp("full") / "release")


def rewrite_bento(folder: Path, path: str, data: bytes) -> None:
    """Replace one file of the release's Bento and vouch for the archive in the manifest (as an
    attacker holding the whole release would)."""
    archive = folder / release.BENTO_FILE
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    members[path] = data
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(content)
            tar.addfile(entry, io.BytesIO(content))
    manifest = json.loads((folder / release.MANIFEST).read_text())
    manifest["files"][release.BENTO_FILE] = modelfile.sha256(archive)
    (folder / release.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_full_release_imports_into_a_fresh_store_again_unchanged_but_never_with_another_bento(
    full_release, fresh, tmp_path
):
    manifest = json.loads((full_release / release.MANIFEST).read_text())
    name, version = manifest["bento"].split(":")

    first = deploy("import", str(full_release), env=fresh)
    again = deploy("import", str(full_release), env=fresh)
    bento_yaml = Path(fresh["BENTOML_HOME"]) / "bentos" / name / version / "bento.yaml"
    before = bento_yaml.read_bytes()
    other = Path(shutil.copytree(full_release, tmp_path / "other"))
    rewrite_bento(other, "./README.md", b"another Bento under the same tag\n")
    refused_ = deploy("import", str(other), env=fresh)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert [m["labels"]["stage"] for m in stored(fresh)] == ["candidate"]
    assert refused_.returncode == 2
    assert refused_.stderr.count("\n") == 1
    assert f"Bento {manifest['bento']} is already in the store with other files" in refused_.stderr
    assert bento_yaml.read_bytes() == before
    assert list(Path(fresh["TMPDIR"]).iterdir()) == []
