"""The local target keeps each model's releases apart, without starting anything: a release of
another model is refused, a rollback only looks at the model's own releases, and state from before
models had their own addresses moves under its model once nothing of it runs."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from core.settings import ROOT
from deploy import config, nginx, routing
from deploy.local import (
    SUPERSEDED,
    LocalTarget,
    Release,
    UsageError,
    _start_time,
    migrate_legacy,
    rolled_back,
    state_models,
)
from deploy.routing import RoutedRelease, Routing

STAGING = config.load(ROOT / "deploy" / "config.yaml").env("staging", "local")


def write_history(path, releases: list[Release]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "history.json").write_text(json.dumps([asdict(r) for r in releases]))


def release(id: str, model_tag: str, status: str) -> Release:
    return Release(
        id=id,
        bento=f"{model_tag.split(':')[0]}_api:{id}",
        model_tag=model_tag,
        port=1,
        status=status,
    )


def test_a_release_of_another_model_is_refused_before_anything_starts(tmp_path):
    target = LocalTarget("staging", STAGING, tmp_path, "wine_a", port=1)
    with pytest.raises(UsageError, match="serves wine_b:v1, not 'wine_a'"):
        target.deploy("wine_b_api:v1", "wine_b:v1")
    assert target.history() == []


def test_a_rollback_only_goes_back_to_a_release_of_the_same_model(tmp_path):
    # A history from before models had their own addresses mixes models: the latest earlier
    # release there is wine_b's, and must never come back as wine_a's rollback.
    write_history(
        tmp_path / "staging" / "wine_a",
        [
            release("r0001", "wine_a:v1", SUPERSEDED),
            release("r0002", "wine_b:v1", SUPERSEDED),
            release("r0003", "wine_a:v2", "live"),
        ],
    )
    live, target = LocalTarget("staging", STAGING, tmp_path, "wine_a").rollback_target()
    assert (live.id, target.id, target.model_tag) == ("r0003", "r0001", "wine_a:v1")


def test_a_rollback_to_a_running_previous_release_of_the_same_bento_is_refused_saying_why(
    tmp_path,
):
    swappable(tmp_path / "staging" / "sales", same_bento=True)
    with pytest.raises(UsageError) as refused:
        LocalTarget("staging", STAGING, tmp_path, "sales").rollback_target()
    assert str(refused.value) == (
        "staging/sales: no earlier release to roll back to: the previous release r0001 runs the"
        " same Bento as r0002 (sales_api:r0001), so going back to it would change nothing;"
        " deploy the Bento you want back with `make deploy ENV=staging BENTO=...`"
    )


def swappable(directory: Path, fallback: str | None = None, same_bento: bool = False) -> None:
    """r0002 live with r0001 still running as its previous release: a rollback is a swap
    (`same_bento`: r0002 is the Bento of r0001 deployed again)."""
    same = [release("r0001", "sales:v1", SUPERSEDED), release("r0002", "sales:v2", "live")]
    if same_bento:
        same[1].bento, same[1].model_tag = same[0].bento, same[0].model_tag
    write_history(directory, same)
    routing.save(
        directory,
        Routing(
            environment="staging",
            model="sales",
            port=2,
            stable="r0002",
            previous="r0001",
            fallback=fallback,
            releases=[
                RoutedRelease(
                    id=r.id, bento=r.bento, model_tag=r.model_tag, port=3 + n, routed=True
                )
                for n, r in enumerate(same)
            ],
        ),
    )


@pytest.mark.parametrize("operation", ["rollback", "unpin"])
def test_a_swap_with_no_supervisor_running_starts_one_first_and_a_refusal_changes_nothing(
    tmp_path, monkeypatch, operation
):
    # The supervisor died (make status: `make adopt`). A rollback (the monitor's on a breach too)
    # or an unpin wrote the routing file, then failed 'the supervisor exited': routing.json said
    # r0001 was stable while history.json said r0002, and the next supervisor served r0001
    # under a history naming r0002 live. Now it takes over first, as a deploy does; here it
    # cannot (no nginx), and nothing is changed.
    directory = tmp_path / "staging" / "sales"
    swappable(directory, fallback="r0002" if operation == "unpin" else None)
    before = {name: (directory / name).read_text() for name in ("history.json", "routing.json")}
    monkeypatch.setattr(nginx, "binary", lambda: None)
    target = LocalTarget("staging", STAGING, tmp_path, "sales", port=2)

    with pytest.raises(UsageError, match=re.escape(nginx.INSTALL_HINT)):
        getattr(target, operation)()

    assert {name: (directory / name).read_text() for name in before} == before


def test_a_release_rolled_back_is_never_the_fallback_of_the_one_restored():
    bad_pinned = Routing(
        environment="staging",
        model="sales",
        port=2,
        stable="r0002",
        previous="r0001",
        fallback="r0002",
        releases=[
            RoutedRelease(
                id=f"r000{n}", bento="b", model_tag=f"sales:v{n}", port=n + 2, routed=True
            )
            for n in (1, 2)
        ],
    )
    after = rolled_back(bad_pinned, "r0002", "r0001")
    assert (after.stable, after.previous, after.fallback) == ("r0001", None, None)
    assert [r.id for r in after.routed()] == ["r0001"]  # r0002 drains, then stops
    conf = nginx.render(after, Path("/nonexistent"))
    assert " backup;" not in conf and ":4;" not in conf  # r0002 (port 4): in no upstream


def test_old_single_address_state_moves_under_the_model_of_its_last_release(tmp_path):
    env_dir = tmp_path / "staging"
    write_history(env_dir, [release("r0001", "sales:v1", "stopped")])
    (env_dir / "logs").mkdir()
    (env_dir / "predictions.jsonl").write_text("{}\n")
    assert migrate_legacy(env_dir) == "sales"
    assert sorted(p.name for p in (env_dir / "sales").iterdir()) == [
        "history.json",
        "logs",
        "predictions.jsonl",
    ]
    assert state_models(tmp_path, "staging") == ["sales"]
    assert migrate_legacy(env_dir) is None


def test_old_single_address_state_that_still_serves_is_refused_until_make_down(tmp_path):
    env_dir = tmp_path / "staging"
    running = release("r0001", "sales:v1", "live")
    running.pid, running.pid_start = os.getpid(), _start_time(os.getpid())  # alive: this test
    write_history(env_dir, [running])
    with pytest.raises(UsageError, match="still run; stop them once with `make down`"):
        migrate_legacy(env_dir)
    assert (env_dir / "history.json").is_file()
