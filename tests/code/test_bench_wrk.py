from loadtests.bench.wrk import pool


def _round(p50_us=1000, p90_us=2000, p99_us=3000, requests=1000, **errors):
    """A wrk round as the Lua hook reports it, one second long."""
    counts = dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
    return {
        "requests": requests,
        "duration_us": 1_000_000,
        "p50_us": p50_us,
        "p90_us": p90_us,
        "p99_us": p99_us,
        "max_us": p99_us,
        **counts,
        **errors,
    }


def test_pool_of_one_round_keeps_its_figures():
    figures = pool([_round()])
    assert (figures["rps"], figures["p50"], figures["p90"], figures["p99"]) == (1000, 1, 2, 3)


def test_pool_takes_the_median_round_so_one_burst_does_not_move_the_tail():
    figures = pool([_round(), _round(p99_us=300_000), _round(p99_us=4000)])
    assert figures["p99"] == 4
    assert figures["max"] == 300


def test_pool_adds_requests_over_the_total_time_and_counts_every_error():
    figures = pool([_round(requests=900, status=3), _round(requests=100, timeout=2, read=1)])
    assert figures["rps"] == 500
    assert figures["errors"] == 6
