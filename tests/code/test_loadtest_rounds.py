"""The load-test verdict on a busy machine (loadtests/rounds.py): figures over rounds, a near miss
measured again. Pure functions on made-up figures: no load is run here."""

from __future__ import annotations

import math

from core.thresholds import parse
from loadtests.gate import GateConfig, check, load_budget_s, shortfalls
from loadtests.rounds import combine, confirmed

GATES = [parse("p90 < 50ms"), parse("error_rate < 1%")]


def round_(p90: float, requests: int = 100, error_rate: float = 0.0) -> dict[str, float]:
    return {
        "requests": requests,
        "rps": requests / 5,
        "error_rate": error_rate,
        "p50": p90 / 2,
        "p90": p90,
        "p99": p90 * 2,
    }


def judge(rounds: list[dict[str, float]]):
    """The gate's own verdict and misses on one attempt's rounds, no production."""
    figures = combine(rounds)
    return check(figures, GATES, None, 1.25), shortfalls(figures, GATES, None, 1.25)


def test_the_verdict_reads_the_median_round_of_each_latency_figure():
    figures = combine([round_(22.0), round_(120.0), round_(30.0)])
    assert figures["p90"] == 30.0
    assert figures["p99"] == 60.0


def test_a_transient_spike_in_one_round_does_not_fail_the_gate():
    result, _ = judge([round_(21.0), round_(120.2), round_(23.0)])
    assert result.accepted, result.failures


def test_a_model_slow_in_most_rounds_still_fails():
    result, _ = judge([round_(73.8), round_(45.6), round_(120.2)])
    assert not result.accepted
    assert result.failures == ["p90 = 73.8 fails p90 < 50ms"]


def test_errors_are_pooled_over_every_round_not_hidden_by_the_median():
    figures = combine([round_(20.0), round_(20.0), round_(20.0, requests=100, error_rate=0.06)])
    assert figures["requests"] == 300
    assert math.isclose(figures["error_rate"], 0.02)
    assert not check(figures, GATES, None, 1.25).accepted


def test_a_round_without_samples_is_left_out_of_the_medians():
    empty = {**round_(0.0, requests=0), "p50": math.nan, "p90": math.nan, "p99": math.nan}
    assert combine([round_(20.0), empty, round_(30.0)])["p90"] == 25.0
    assert math.isnan(combine([empty])["p90"])


def test_a_miss_is_measured_relative_to_its_bound():
    misses = shortfalls({**round_(60.0), "rps": 45.0}, [*GATES, parse("rps > 60")], None, 1.25)
    assert misses == {"p90": 0.2, "rps": 0.25}


def test_a_miss_of_a_zero_bound_is_never_near():
    misses = shortfalls(round_(20.0, error_rate=0.001), [parse("error_rate <= 0")], None, 1.25)
    assert misses == {"error_rate": math.inf}


def test_a_miss_of_the_production_ratio_is_relative_to_its_limit():
    misses = shortfalls(round_(30.0), [], round_(20.0), 1.25)
    assert misses == {"p90_vs_production": 0.2}


class Attempts:
    """Stands in for the load test: each call returns the next attempt's rounds."""

    def __init__(self, *attempts: list[dict[str, float]]) -> None:
        self.attempts, self.calls = list(attempts), 0

    def __call__(self, attempt: int) -> list[dict[str, float]]:
        self.calls += 1
        assert attempt == self.calls
        return self.attempts[attempt - 1]


def test_a_near_miss_confirmed_by_the_rerun_still_fails():
    measure = Attempts([round_(55.0)] * 3, [round_(54.0)] * 3)
    result, attempts = confirmed(measure, judge, within=0.5)
    assert not result.accepted
    assert measure.calls == 2 and len(attempts) == 2
    assert result.failures == ["p90 = 54.0 fails p90 < 50ms"]


def test_a_near_miss_the_rerun_does_not_reproduce_passes():
    measure = Attempts([round_(55.0)] * 3, [round_(30.0)] * 3)
    result, attempts = confirmed(measure, judge, within=0.5)
    assert result.accepted
    assert len(attempts) == 2


def test_a_far_miss_fails_at_once_without_a_rerun():
    measure = Attempts([round_(800.0)] * 3)
    result, attempts = confirmed(measure, judge, within=0.5)
    assert not result.accepted
    assert measure.calls == 1 and len(attempts) == 1


def test_a_miss_near_on_one_bound_and_far_on_another_fails_at_once():
    measure = Attempts([round_(55.0, error_rate=0.5)] * 3)
    result, _ = confirmed(measure, judge, within=0.5)
    assert not result.accepted
    assert measure.calls == 1


def test_no_rerun_when_confirmation_is_off():
    measure = Attempts([round_(51.0)] * 3)
    result, _ = confirmed(measure, judge, within=0.0)
    assert not result.accepted
    assert measure.calls == 1


def test_a_pass_is_measured_once():
    measure = Attempts([round_(20.0)] * 3)
    result, _ = confirmed(measure, judge, within=0.5)
    assert result.accepted
    assert measure.calls == 1


def test_the_load_budget_counts_each_rounds_warm_up_and_the_rerun():
    cfg = GateConfig.model_validate(
        {
            "load": {
                "users": 1,
                "spawn_rate": 1,
                "rate_per_user": 1,
                "duration_s": 20,
                "warmup_s": 2,
            },
            "thresholds": [],
            "regression": {"p90_ratio": 1.25},
            "verdict": {"rounds": 3, "confirm_within": 0.5},
        }
    )
    assert load_budget_s(cfg, targets=2) == 2 * 2 * (20 + 3 * 2)
    no_rerun = cfg.model_copy(
        update={"verdict": cfg.verdict.model_copy(update={"confirm_within": 0})}
    )
    assert load_budget_s(no_rerun, targets=1) == 20 + 3 * 2
