"""The sustained budget miss (deploy/supervisor.py): when the stable release's traffic is pinned to
the previous release, from access-log records and the releases' crash times, without nginx or a
release. A crashed stable release restarting is not missing its budget: the pin waits until it
answers again."""

from __future__ import annotations

import datetime as dt
import json

from deploy import nginx, routing, supervisor
from deploy.routing import RoutedRelease, Routing, SustainedMiss

RULE = SustainedMiss(max_share=0.5, window_s=30, min_requests=20, every_s=2)
T0 = 1_800_000_000.0  # epoch seconds: the access log's times


def record(at: float, answered: str = "r0002", routed: str = "r0002") -> dict:
    """An access-log line of a prediction the stable route took `at` (whole seconds, as nginx's
    $time_iso8601 writes it)."""
    when = dt.datetime.fromtimestamp(int(at), dt.UTC).isoformat()
    return {"time": when, "method": "POST", "version": "", "routed_to": routed,
            "answered_by": answered}  # fmt: skip


def misses(at: float, n: int) -> list[dict]:
    """`n` requests the previous release answered for the stable one, a tenth of a second apart."""
    return [record(at + i / 10, answered="r0001") for i in range(n)]


def answered(at: float, n: int) -> list[dict]:
    return [record(at + i / 10) for i in range(n)]


def decide(records: list[dict], crashed: list[float]) -> str | None:
    restarts = [supervisor.Restart(c) for c in crashed]
    counted, _ = supervisor.restart_exempt(supervisor.answers(records, T0), "r0002", restarts)
    return supervisor.breach(counted, RULE, "r0001")


def test_a_stable_release_that_keeps_missing_its_budget_is_pinned():
    reason = decide(answered(T0, 10) + misses(T0 + 2, 30), crashed=[])
    assert reason == (
        "30/40 (75%) of its requests in the last 30s were answered by the previous release r0001"
        " (max 50%)"
    )


def test_the_misses_of_a_stable_release_restarting_after_a_crash_do_not_pin_it():
    # Crashed at T0+2.5 (the supervisor saw it then); 5 s to come back, the previous answering.
    records = answered(T0, 10) + misses(T0 + 2, 50) + answered(T0 + 8, 10)
    assert decide(records, crashed=[T0 + 2.5]) is None


def test_a_restarted_release_that_misses_its_budget_once_it_answers_again_is_pinned():
    records = answered(T0, 10) + misses(T0 + 2, 50) + answered(T0 + 8, 1) + misses(T0 + 9, 40)
    assert decide(records, crashed=[T0 + 2.5]) is not None


def test_a_restart_ends_at_the_first_request_the_release_answers_itself_after_the_crash():
    window = supervisor.answers(misses(T0 + 2, 5) + answered(T0 + 8, 1), T0)
    restarting = [supervisor.Restart(T0 + 2.5)]
    assert supervisor.restart_exempt(window, "r0002", restarting) == (
        [False],
        [supervisor.Restart(T0 + 2.5, back=T0 + 8)],
    )
    still = supervisor.answers(misses(T0 + 2, 5), T0)
    assert supervisor.restart_exempt(still, "r0002", restarting) == ([], restarting)


def state(tmp_path) -> Routing:
    releases = [
        RoutedRelease(id=f"r000{n}", bento="b", model_tag=f"sales:v{n}", port=n + 2, routed=True)
        for n in (1, 2)
    ]
    current = Routing(environment="staging", model="sales", port=2, stable="r0002",
                      previous="r0001", releases=releases)  # fmt: skip
    current.limits.sustained_miss = RULE
    routing.save(tmp_path, current)
    return current


def log(tmp_path, records: list[dict]) -> None:
    path = nginx.paths(tmp_path / "nginx")["access_log"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def test_the_supervisors_watch_does_not_pin_a_stable_release_restarting_after_a_crash(tmp_path):
    current = state(tmp_path)
    watch = supervisor.MissWatch(tmp_path)
    log(tmp_path, answered(T0, 10) + misses(T0 + 2, 50))
    assert watch.tick(current, {"r0002": T0 + 2.5}, now=100, wall=T0 + 7) is None
    assert routing.load(tmp_path).fallback is None
    log(tmp_path, answered(T0 + 8, 1))  # back
    assert watch.tick(current, {"r0002": T0 + 2.5}, now=110, wall=T0 + 9) is None
    log(tmp_path, answered(T0 + 9, 10))  # the restart's misses stay out of the count
    assert watch.tick(current, {"r0002": T0 + 2.5}, now=120, wall=T0 + 10) is None
    log(tmp_path, misses(T0 + 11, 60))  # then late for good
    assert watch.tick(current, {"r0002": T0 + 2.5}, now=130, wall=T0 + 17) is not None
    assert routing.load(tmp_path).fallback == "r0002"
