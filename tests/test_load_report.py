"""The load test's wrk parser, on output shaped like the run that once broke CI."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("load", Path(__file__).parents[1] / "benchmarks" / "load.py")
assert spec is not None and spec.loader is not None
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)

# The "+/- Stdev" column ends in "95.50%" and "81.99%": an unanchored "50%" or "99%" matched them.
OUTPUT = """\
Running 3s test @ http://127.0.0.1:8000
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    25.12ms   60.31ms   1.02s    95.50%
    Req/Sec   321.40    81.99%   500.00     81.99%
  Latency Distribution
     50%   19.25ms
     75%   24.10ms
     90%   31.00ms
     99%    1.01s
  1903 requests in 3.02s, 12.1MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    629.52
Transfer/sec:      4.01MB
"""


def test_parses_percentiles_from_the_distribution_not_the_thread_stats():
    result = load.parse_wrk(OUTPUT)
    assert result["requests"] == 1903
    assert result["rps"] == pytest.approx(629.52)
    assert result["p50"] == pytest.approx(0.01925)
    assert result["p99"] == pytest.approx(1.01)
    assert result["errors"] == 4 + 3


def test_missing_distribution_names_what_was_missing():
    with pytest.raises(ValueError, match="no 50% latency"):
        load.parse_wrk(OUTPUT.split("  Latency Distribution")[0] + "  1 requests in 1s\nRequests/sec: 1\n")
