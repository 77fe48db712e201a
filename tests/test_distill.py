"""Tests of physkernels.distill (paper Sec. IV) and the models.distill driver."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from physkernels.distill import (DistillConfig, EmbeddingNet, Partition, arcface_loss, check_class_sizes,
                                 check_lambda, classify_by_references, distill_hierarchy, distill_level, eq5_loss,
                                 groups_per_level, padded_index, partition, resnet18, resnet50, subset_stats)


def _level_data(seed, groups=3, num_classes=3, size=12, channels=1, dtype=torch.float64):
    """Images of ``num_classes`` classes with 2..4 images per (subset, class); subsets interleaved in the order."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(2, 5, (groups, num_classes), generator=gen)
    labels = torch.cat([torch.full((int(counts[g, c]),), c) for g in range(groups) for c in range(num_classes)])
    subset = torch.cat([torch.full((int(counts[g, c]),), g) for g in range(groups) for c in range(num_classes)])
    perm = torch.randperm(len(labels), generator=gen)
    images = torch.rand(len(labels), channels, size, size, generator=gen, dtype=dtype)
    return images, labels[perm], Partition(subset[perm], groups), counts


def test_eq5_loss_matches_explicit_float64_loops():
    gen = torch.Generator().manual_seed(1)
    groups, n, dim = 3, 4, 5
    counts = torch.randint(1, 4, (groups, n), generator=gen)
    labels = torch.cat([torch.full((int(counts[g, c]),), c) for g in range(groups) for c in range(n)])
    subset = torch.cat([torch.full((int(counts[g, c]),), g) for g in range(groups) for c in range(n)])
    perm = torch.randperm(len(labels), generator=gen)
    labels, subset = labels[perm], subset[perm]
    feats = torch.randn(len(labels), dim, generator=gen, dtype=torch.float64)
    refs = torch.randn(groups, n, dim, generator=gen, dtype=torch.float64)
    lam = 19.0
    got = eq5_loss(refs, subset_stats(feats, labels, subset, groups, n), lam)
    for g in range(groups):
        total = 0.0
        for a in range(n):
            for b in range(n):
                d_ab = sum(float(((refs[g, a] - feats[i]) ** 2).sum()) for i in range(len(labels))
                           if subset[i] == g and labels[i] == b)
                total += lam * d_ab if a == b else -d_ab
        assert math.isclose(float(got[g]), total, rel_tol=1e-12, abs_tol=1e-9)
    stats = subset_stats(feats, labels, subset, groups, n)
    assert torch.autograd.gradcheck(lambda r: eq5_loss(r, stats, lam), (refs.clone().requires_grad_(),))


def test_eq5_lambda_must_bound_the_loss():
    check_lambda(torch.tensor([[3, 3, 3]]), 19.0)
    with pytest.raises(ValueError, match="unbounded below"):
        check_lambda(torch.tensor([[1, 5, 5]]), 9.0)


def test_arcface_loss_matches_direct_float64_computation():
    gen = torch.Generator().manual_seed(2)
    images, labels, part, _ = _level_data(3, groups=2, num_classes=3)
    feats = torch.randn(len(labels), 6, generator=gen, dtype=torch.float64)
    refs = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    s, m = 8.0, 0.3
    got = arcface_loss(refs, feats, labels, padded_index(part.subset, 2), s, m)
    for g in range(2):
        members = [i for i in range(len(labels)) if part.subset[i] == g]
        losses = []
        for i in members:
            cos = torch.nn.functional.cosine_similarity(feats[i][None], refs[g], dim=1)
            theta = torch.acos(cos[labels[i]])
            logits = s * cos.clone()
            logits[labels[i]] = s * torch.cos(theta + m)  # theta + m < pi for these draws (checked below)
            assert float(theta) + m < math.pi
            losses.append(float(torch.logsumexp(logits, 0) - logits[labels[i]]))
        assert math.isclose(float(got[g]), sum(losses) / len(losses), rel_tol=1e-9)


@pytest.mark.parametrize("loss", ["eq5", "arcface"])
def test_batched_level_equals_per_subset_optimisation(loss):
    images, labels, part, _ = _level_data(4, groups=3, num_classes=3)
    config = DistillConfig(steps=6, lr=0.05, num_nets=2, width=4, loss=loss)
    batched = distill_level(images, labels, part, 3, config, steps=6, seed=11, progress=False).references
    for g in range(part.groups):
        mine = part.subset == g
        alone = distill_level(images[mine], labels[mine], Partition(torch.zeros(int(mine.sum()), dtype=torch.int64),
                              1), 3, config, steps=6, seed=11, progress=False).references
        torch.testing.assert_close(batched[g], alone[0], rtol=1e-9, atol=1e-10)
    start = distill_level(images, labels, part, 3, config, steps=0, seed=11, progress=False).references
    assert not torch.allclose(start, batched)  # the optimisation moved the references


def test_hierarchy_bookkeeping_every_image_used_once_per_level():
    num_classes, mappings = 3, (4, 3, 2)  # 24 per class nominal; level 1: 6 groups of 3..5 images
    sizes = [24, 19, 29]
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.rand(len(labels), 1, 8, 8)
    levels = distill_hierarchy(images, labels, num_classes, mappings, DistillConfig(steps=1, width=2, num_nets=1),
                               progress=False)
    assert [lv.per_class for lv in levels] == list(groups_per_level(mappings)) == [6, 2, 1]
    prev_labels = labels
    for lv in levels:
        subset = lv.partition.subset
        assert subset.shape == prev_labels.shape  # one subset per image of the previous level ...
        members = torch.cat([torch.nonzero(subset == g).flatten() for g in range(lv.partition.groups)])
        assert torch.equal(members.sort().values, torch.arange(len(prev_labels)))  # ... each used exactly once
        counts = lv.partition.counts(prev_labels, num_classes)
        assert bool((counts >= 1).all())
        per_class = torch.bincount(prev_labels, minlength=num_classes)
        assert bool(((counts - per_class / lv.partition.groups).abs() < 1).all())  # as equal as possible
        assert lv.images.shape == (lv.partition.groups * num_classes, 1, 8, 8)
        assert torch.equal(lv.labels, torch.arange(num_classes).repeat(lv.partition.groups))
        prev_labels = lv.labels


def test_classify_by_references_on_a_known_toy_set():
    refs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.7, 0.7, 0]])
    ref_labels = torch.tensor([0, 1, 2, 2])  # class 2 has two references; the nearest one counts
    test = torch.tensor([[5.0, 0.1, 0], [0.2, 3.0, 0.1], [0, 0.1, 2.0], [1.0, 1.05, 0.0], [-1.0, 0, 0.1]])
    assert classify_by_references(test, refs, ref_labels, 3).tolist() == [0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="no reference for classes \\[1\\]"):
        classify_by_references(test, refs[[0, 2]], torch.tensor([0, 2]), 3)


def test_networks_have_the_documented_shapes():
    assert EmbeddingNet(1, 28, width=8)(torch.rand(2, 1, 28, 28)).shape == (2, 8 * 16)  # Fig. 8: 4x4 per channel
    assert EmbeddingNet(3, 32, width=8)(torch.rand(2, 3, 32, 32)).shape == (2, 8 * 16)
    r18, r50 = resnet18(1, 10, width=4).eval(), resnet50(3, 10, width=2).eval()
    assert r18(torch.rand(2, 1, 28, 28)).shape == (2, 10) and r18.embed(torch.rand(2, 1, 28, 28)).shape == (2, 32)
    assert r50(torch.rand(2, 3, 32, 32)).shape == (2, 10) and r50.feature_dim == 64


def test_bad_input_gives_clear_errors():
    labels = torch.arange(3).repeat_interleave(torch.tensor([20, 21, 40]))
    with pytest.raises(ValueError, match="class sizes \\{2: 40\\} do not fit"):
        check_class_sizes(labels, 3, (5, 4))
    with pytest.raises(ValueError, match="classes \\[1\\] are empty"):
        check_class_sizes(torch.tensor([0] * 20 + [2] * 20), 3, (5, 4))
    with pytest.raises(ValueError, match="integers >= 2"):
        check_class_sizes(labels, 3, (5, 1))
    with pytest.raises(ValueError, match="do not fit"):
        distill_hierarchy(torch.rand(len(labels), 1, 8, 8), labels, 3, (5, 4), progress=False)
    with pytest.raises(ValueError, match="fewer than"):
        partition(torch.tensor([0, 0, 1]), 2, 2, torch.Generator())
    with pytest.raises(ValueError, match="loss must be one of"):
        DistillConfig(loss="l2")
    with pytest.raises(ValueError, match="steps has 2 entries"):
        DistillConfig(steps=(1, 2)).steps_at(0, 3)


def test_driver_quick_smoke(tmp_path):
    from models.distill import main

    out = tmp_path / "run"
    results = main(["--quick", "--out", str(out), "--no-progress", "--bench-dir", str(tmp_path / "bench")])
    assert [r["level"] for r in results["levels"]] == ["D0", "D1", "D2", "D3"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in results["levels"])
    assert json.loads((out / "results.json").read_text())["levels"] == results["levels"]
    for name in ("accuracy.md", "distilled_quick.png", "levels.pt"):  # a quick run's figure says so
        assert os.path.getsize(out / name) > 0
    assert (tmp_path / "bench" / "distill_digits.md").read_text().count("| D") == 4
    with pytest.raises(ValueError, match="do not fit"):
        main(["--quick", "--schedule", "10,2", "--steps", "1", "--out", str(out), "--no-progress"])
