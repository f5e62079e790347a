from loadtests.bench.wrk import pool


def _run(latency_us, requests=1000, duration_us=1_000_000, **errors):
    """A wrk run whose every request took `latency_us` (as the Lua hook reports it)."""
    return {
        "requests": requests,
        "duration_us": duration_us,
        "max_us": latency_us,
        "connect": 0,
        "read": 0,
        "write": 0,
        "status": 0,
        "timeout": 0,
        "quantiles_us": [latency_us] * 1000,
        **errors,
    }


def test_pool_of_one_run_keeps_its_figures():
    figures = pool([_run(2000)])
    assert (figures["p50"], figures["p99"], figures["rps"]) == (2.0, 2.0, 1000)


def test_pool_weighs_each_run_by_its_requests():
    figures = pool([_run(1000, requests=900), _run(9000, requests=100)])
    assert (figures["p50"], figures["p90"], figures["p99"]) == (1.0, 1.0, 9.0)
    assert figures["rps"] == 500


def test_pool_counts_every_kind_of_error():
    figures = pool([_run(1000, status=3), _run(1000, timeout=2, read=1)])
    assert figures["errors"] == 6
