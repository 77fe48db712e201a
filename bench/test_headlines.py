"""pytest-benchmark entry point for the headline comparisons of ``physkernels bench`` (its verdict table).

    pytest bench/ --benchmark-only                      # time every headline: our op and its baseline, per suite
    pytest bench/ --benchmark-only --benchmark-autosave  # save the run (.benchmarks/)
    pytest bench/ --benchmark-only --benchmark-compare   # compare with the last saved run (e.g. another commit)

Each suite's op and baseline share a benchmark group, so the table shows them side by side. The full suites (every
shape, memory, GPU tables) stay in ``physkernels bench``; this file is for regression tracking between commits.
"""

import pytest
import torch

pytest.importorskip("pytest_benchmark")

from physkernels.benchmarks import SUITES, verdict  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HEADLINES = verdict.headlines(list(SUITES), DEVICE)


@pytest.mark.parametrize("side", ["ours", "baseline"])
@pytest.mark.parametrize("headline", HEADLINES, ids=[f"{h.suite}-{i}" for i, h in enumerate(HEADLINES)])
def test_headline(benchmark, headline, side):
    if headline.run_ours is None or headline.run_baseline is None:
        pytest.skip(headline.note or "not measurable here")
    benchmark.group = f"{headline.suite}: {headline.ours} vs {headline.baseline}"
    benchmark.name = headline.ours if side == "ours" else headline.baseline
    run = headline.run_ours if side == "ours" else headline.run_baseline
    if DEVICE == "cuda":
        def run_synchronised():
            run()
            torch.cuda.synchronize()
        benchmark(run_synchronised)
    else:
        benchmark(run)
