"""Benchmark harness: timing, CPU peak memory from allocation events, result files."""

import json

import torch

from physkernels.benchmarks.harness import ResultTable, median_time, peak_memory_bytes, write_results


def test_peak_memory_sees_a_temporary_allocation():
    n = 1 << 20  # 4 MiB of float32, freed before the function returns

    def work():
        a = torch.ones(n)
        b = a * 2
        return float(b[0])

    peak = peak_memory_bytes(work)
    assert 2 * 4 * n <= peak <= 3 * 4 * n


def test_median_time_is_positive():
    assert median_time(lambda: torch.randn(100).sum(), repeats=3, warmup=1) > 0


def test_write_results(tmp_path):
    table = ResultTable("demo", "Demo", ["shape", "ms"])
    table.add(shape="4x4", ms=1.5)
    json_path, md_path = write_results([table], str(tmp_path), "demo")
    payload = json.load(open(json_path))
    assert payload["tables"][0]["rows"] == [{"shape": "4x4", "ms": 1.5}]
    assert "commit" in payload["machine"] and "date" in payload["machine"]
    assert "| 4x4 | 1.5 |" in open(md_path).read()
