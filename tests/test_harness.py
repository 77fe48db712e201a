"""Benchmark harness: timing, CPU peak memory from allocation events, result files."""

import json

import pytest
import torch

from physkernels.benchmarks import SUITES
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


@pytest.mark.parametrize("suite", list(SUITES))
def test_quick_suite_runs_and_its_tables_are_well_formed(suite, tmp_path):
    """Every benchmark suite runs end to end at its quick size (`physkernels bench --quick --suite NAME`) and writes
    tables whose rows fill every column; timing columns hold positive numbers. (Timings themselves are not
    asserted: they belong to bench/results.)"""
    import math

    from physkernels.cli import main

    assert main(["bench", "--quick", "--suite", suite, "--device", "cpu", "--out", str(tmp_path),
                 "--stem", "smoke"]) == 0
    payload = json.load(open(tmp_path / "smoke.json"))
    assert payload["tables"], suite
    for table in payload["tables"]:
        assert table["rows"], (suite, table["name"])
        for row in table["rows"]:
            assert set(row) <= set(table["columns"]), (table["name"], row)
            filled = [c for c in table["columns"] if row.get(c) not in (None, "")]
            assert filled, (table["name"], row)
            for column, value in row.items():
                if column.endswith(" ms") or column.endswith("_ms") or column in ("ms", "seconds"):
                    assert value is None or isinstance(value, str) or (math.isfinite(value) and value > 0), \
                        (table["name"], column, value)
    assert (tmp_path / "smoke.md").read_text().count("|") > 0


def test_verdict_table_structure():
    from physkernels.benchmarks import verdict

    assert verdict.verdict(1.1, 1.3) == "faster" and verdict.verdict(0.7, 0.9) == "slower"
    assert verdict.verdict(0.9, 1.2) == "no clear difference"
    small, large = torch.randn(64), torch.randn(1 << 20)
    rows = [verdict.Headline("demo", "small sum", "large sum", lambda: small.sum(), lambda: large.sum()),
            verdict.Headline("demo", "peer", "missing peer", None, None, "peer is not installed: pip install x")]
    result = verdict.table(rows, rounds=3, min_run_time=0.01)
    assert result.columns == verdict.COLUMNS and len(result.rows) == 2
    measured, missing = result.rows
    q1, q3 = (float(v) for v in measured["IQR"].split("-"))
    # (all three shown to 3 significant digits)
    assert 0.99 * q1 <= measured["speed-up (median)"] <= 1.01 * q3 and measured["verdict"].split(" (")[0] in (
        "faster", "slower", "no clear difference")
    assert missing["speed-up (median)"] is None and missing["verdict"] == "peer is not installed: pip install x"
    # one headline (or more) for every suite, each with both callables or a reason
    made = verdict.headlines(list(SUITES), "cpu")
    assert {h.suite for h in made} == set(SUITES)
    assert all((h.run_ours is not None and h.run_baseline is not None) or h.note for h in made)


def _model_steps():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "model_steps.py")
    spec = importlib.util.spec_from_file_location("model_steps", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_models_suite_runs_every_pair_in_its_own_process(tmp_path):
    """The models suite (bench/model_steps.py) on one small pair: a well-formed row, written to disk as it goes;
    a pair whose process fails becomes a row that says why instead of ending the run."""
    steps = _model_steps()
    assert ("fc2-mpo", "fc2") in steps.pairs() and ("taylornet-mnist", "taylornet-mnist-conv") in steps.pairs()
    (table,) = steps.run(False, "cpu", ["fc2-mpo"], batch=2, rounds=2, out=(str(tmp_path), "models_cpu"))
    (row,) = table.rows
    assert set(row) == set(table.columns)
    assert row["verdict"] in ("faster", "slower", "no clear difference") and row["twin/ours (median)"] > 0
    assert (tmp_path / "models_cpu.md").read_text().count("| fc2-mpo |") == 1
    failed = steps._row_in_child("fc2-mpo", "fc2", 2, "bogus-device", 1, 0.01)
    assert failed["verdict"].startswith("not measured:")


def test_compiled_reference_table_times_both_sides_and_reports_a_failed_compile():
    from physkernels.benchmarks.harness import compiled_reference_table

    a = torch.randn(64, 64)

    def broken():
        raise RuntimeError("inductor gave up")

    cases = [({"case": "ok"}, lambda: a @ a, lambda: (a @ a) @ a), ({"case": "broken"}, lambda: a @ a, broken)]
    table = compiled_reference_table("t", "t", ["case"], cases, rounds=2)
    ok, failed = table.rows
    assert ok["ours fwd+bwd ms"] > 0 and ok["compiled reference fwd+bwd ms"] > 0 and ok["compiled/ours (median)"] > 0
    assert failed["compiled reference fwd+bwd ms"] == "compile fails: RuntimeError"
