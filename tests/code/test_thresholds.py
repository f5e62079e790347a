import pytest

from core.thresholds import ThresholdError, parse, parse_many


@pytest.mark.parametrize(
    ("text", "metric", "op", "value"),
    [
        ("p90 < 50ms", "p90", "<", 50.0),
        ("p99<0.25s", "p99", "<", 250.0),
        ("error_rate < 0.1%", "error_rate", "<", 0.001),
        ("rps > 100", "rps", ">", 100.0),
        ("nwrmsle <= 0.80", "nwrmsle", "<=", 0.80),
    ],
)
def test_parse_reads_k6_like_thresholds_in_base_units(text, metric, op, value):
    t = parse(text)
    assert (t.metric, t.op) == (metric, op)
    assert t.value == pytest.approx(value)


def test_parse_takes_the_metric_from_the_config_key():
    assert parse("<= 0.8", metric="nwrmsle").metric == "nwrmsle"


@pytest.mark.parametrize("text", ["p90 50ms", "p90 < fast", "p90 < 50 minutes", "", "< 3"])
def test_parse_rejects_malformed_thresholds_with_an_example(text):
    with pytest.raises(ThresholdError, match=r"p90 < 50ms|names no metric"):
        parse(text)


def test_parse_many_splits_a_command_line_list():
    assert [t.metric for t in parse_many("p90<20ms, error_rate<1%")] == ["p90", "error_rate"]


def test_threshold_holds_only_on_the_right_side_of_the_bound():
    t = parse("p90 < 50ms")
    assert t.holds(49.9)
    assert not t.holds(50.0)
