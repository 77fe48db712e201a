"""Paper models: parameter counts and rho vs the papers, one training step of every model, the driver, exact
resume after a stop, and DDP with two gloo processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

import physkernels.nn as pknn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # models/ lives in the repo, not in the installed package; append so that an installed
    sys.path.append(REPO)  # physkernels still wins over the source tree

from models import MODELS, build, spec  # noqa: E402
from models.layers import MPOFeatureMap  # noqa: E402
from models.mponets import VGG, DenseNet, ResNet  # noqa: E402
from models.plots import accuracy_vs_depth  # noqa: E402
from models.presets import PRESETS  # noqa: E402
from models.registry import ModelSpec  # noqa: E402
from models.stats import mean_sigma  # noqa: E402
from models.train import load_data, main  # noqa: E402
from models.trainer import RunConfig, train_run  # noqa: E402

HAS_CG = hasattr(pknn, "CG2d")
needs_cg = pytest.mark.skipif(not HAS_CG, reason="physkernels.nn.CG2d not available on this branch yet")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine two threads per process oversubscribe and run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _uses_cg(name: str) -> bool:
    return name.startswith("taylornet") and not name.endswith("-conv")


# ---------------------------------------------------------------- parameter counts and rho (Eq. 6, 9) vs paper

@pytest.mark.parametrize("name, lo, hi", [
    ("lenet5-mpo", 0.045, 0.055),                        # paper: rho ~ 0.05
    ("vgg16-mpo", 0.0004, 0.0006), ("vgg19-mpo", 0.0004, 0.0006),  # paper: ~ 0.0005
    ("resnet20-mpo", 0.105, 0.115), ("resnet56-mpo", 0.105, 0.115),  # paper: ~ 0.11 at k = 4
    ("densenet-16-12-12-mpo", 0.1285, 0.1295), ("densenet-16-12-24-mpo", 0.0885, 0.0895),  # Table II
    ("densenet-24-32-12-mpo", 0.0695, 0.0705), ("densenet-96-32-24-mpo", 0.0435, 0.0445),
])
def test_compression_ratio_matches_paper(name, lo, hi):
    model = build(name)
    report = model.compression()
    assert lo <= report.rho <= hi, (name, report.rho)
    assert report.parameters == sum(p.numel() for p in model.parameters())
    # The dense twin has, at the same module paths, dense layers with exactly N_ori weights.
    twin = build(spec(name).twin)
    modules = dict(twin.named_modules())
    for path, n_mpo, n_ori in report.layers:
        assert isinstance(modules[path], (nn.Linear, nn.Conv2d)) and modules[path].weight.numel() == n_ori
        assert n_mpo < n_ori
    assert twin.compression().rho == 1.0


def test_fc2_counts_match_paper():
    # "Even for the D = 2 MPO-Net, which has only 1024 parameters"; "for D = 16 rho is still below 8%".
    assert build("fc2-mpo", 2).compression().mpo_parameters == 1024
    report = build("fc2-mpo", 16).compression()
    assert report.original_parameters == 784 * 256 + 256 * 10 and report.rho < 0.08
    rhos = [build("fc2-mpo", d).compression().rho for d in (2, 4, 8, 16)]
    assert rhos == sorted(rhos)  # rho grows with D


@needs_cg
def test_taylornet_parameter_counts():
    cifar = build("taylornet-cifar10").num_parameters()
    assert 1.15e6 <= cifar <= 1.25e6, cifar                 # paper: "only 1.2 million"
    assert abs(build("taylornet-7x7").num_parameters() - 248_000) < 2_500  # paper: "about 248 thousand"
    # No activation anywhere; the ablation has the same layers with every CG replaced by a Conv2d.
    for name in ("taylornet-mnist", "taylornet-7x7", "taylornet-cifar10"):
        model, ablation = build(name), build(name + "-conv")
        kinds = [type(m).__name__ for m in model.features]
        assert kinds.count("CG2d") == len(kinds) // 2 and not any(isinstance(m, nn.ReLU) for m in model.modules())
        assert [type(m) for m in ablation.features] == [nn.Conv2d] * len(kinds)
        for cg, conv in zip(model.features[1::2], ablation.features[1::2]):
            assert (cg.stride, cg.dilation, cg.kernel_size) == (conv.stride, conv.dilation, conv.kernel_size)


def test_taylornet_shapes_derived_from_captions():
    # Feature-map sizes 28 -> 14 -> 7 -> 4 -> 2 (MNIST), 7 -> 4 -> 2 -> 1, 32 -> 16 -> 8 -> 4 -> 2 -> 1 (CIFAR-10),
    # checked on the CG->conv ablation, which has the same shapes.
    for name, sizes in (("taylornet-mnist-conv", [28, 14, 14, 7, 7, 4, 4, 2]),
                        ("taylornet-7x7-conv", [7, 4, 4, 2, 2, 1]),
                        ("taylornet-cifar10-conv", [32, 16, 16, 8, 8, 4, 4, 2, 2, 1])):
        model = build(name)
        x = torch.rand(1, *spec(name).input_shape)
        seen = []
        for layer in model.features:
            x = layer(x)
            seen.append(x.shape[-1])
        assert seen == sizes, (name, seen)


# ---------------------------------------------------------------- one training step of every model

def _tiny_input_shape(name: str) -> tuple[int, int, int]:
    c, h, w = spec(name).input_shape
    if (name.startswith("resnet") and "unit" not in name) or name.startswith("densenet"):
        return c, 8, 8  # global average pooling: any size works; keeps the deep nets fast
    return c, h, w


def _one_step(model: nn.Module, input_shape) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(2, *input_shape), torch.tensor([3, 7])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(x)
    assert out.shape == (2, 10)
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    assert math.isfinite(loss.item())
    for (name, p), old in zip(model.named_parameters(), before):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    optimizer.step()
    assert any(not torch.equal(p, old) for p, old in zip(model.parameters(), before))


@pytest.mark.parametrize("name", [n for n in MODELS if n != "resnet56-mpo-unit"])
def test_one_training_step(name):
    if _uses_cg(name) and not HAS_CG:
        pytest.skip("physkernels.nn.CG2d not available on this branch yet")
    _one_step(build(name), _tiny_input_shape(name))


def test_mpo_resunit_training_step():
    # resnet56-mpo-unit at k = 4 costs ~20 s per step here; the same code path at depth 14, k = 1, where the MPO
    # is exactly the paper's M^{2,4,4,4,4,4,2}_{2,4,4,4,4,4,2}(4).
    model = ResNet(14, k=1, mpo=True, mpo_unit=True)
    assert [m.mpo.in_shape for m, _ in model._mpo_layers[:2]] == [(2, 4, 4, 4, 4, 4, 2)] * 2
    _one_step(model, (3, 32, 32))
    report = build("resnet56-mpo-unit").compression()
    assert len(report.layers) == 3 and report.layers[-1][0] == "fc"


# ---------------------------------------------------------------- bad input

def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build("fc3")
    with pytest.raises(ValueError, match="bond_dim"):
        build("fc2", 4)
    with pytest.raises(ValueError, match="bond_dim"):
        build("fc2-mpo", 0)
    with pytest.raises(ValueError, match="depth"):
        VGG(depth=17)
    with pytest.raises(ValueError, match="depth"):
        ResNet(depth=21)
    with pytest.raises(ValueError, match="depth >= 14"):
        ResNet(depth=8, mpo=True, mpo_unit=True)
    with pytest.raises(ValueError, match="Table II"):
        DenseNet(16, 12, 16, mpo=True)
    with pytest.raises(ValueError, match="multiply"):
        MPOFeatureMap(8, 2, 2, (2, 8), (4, 8), 2)
    with pytest.raises(ValueError, match="x must have shape"):
        MPOFeatureMap(8, 2, 2, (4, 8), (4, 8), 2)(torch.rand(1, 8, 3, 3))
    with pytest.raises(SystemExit):
        main(["--model", "fc2", "--dataset", "mnist"])  # no --data-dir


def test_mean_sigma_is_eq_11():
    mean, sigma = mean_sigma([97.0, 98.0, 99.0, 98.0, 98.0])
    assert mean == 98.0 and sigma == pytest.approx(math.sqrt(2.0 / 4))
    assert mean_sigma([91.5]) == (91.5, 0.0)


def test_digits_fed_to_every_input_shape():
    for shape in ((1, 28, 28), (1, 7, 7), (3, 32, 32)):
        (x, y), (xt, yt) = load_data("digits", None, shape, normalize=True, quick=True)
        assert x.shape[1:] == shape and xt.shape[1:] == shape and len(x) == 256 and len(xt) == 128
        assert abs(x.mean().item()) < 1e-4


# ---------------------------------------------------------------- driver, resume, DDP

def _final_weights(out: str, tag: str) -> dict:
    return torch.load(os.path.join(out, "checkpoints", f"{tag}.pt"), weights_only=False)["model"]


def test_driver_quick_smoke(tmp_path):
    out = str(tmp_path / "run")
    rc = main(["--model", "fc2", "fc2-mpo", "--bond-dim", "2", "4", "--quick", "--runs", "2", "--out", out,
               "--no-progress"])
    assert rc == 0
    results = json.load(open(os.path.join(out, "results.json")))
    assert [(s["model"], s["bond_dim"]) for s in results["summaries"]] == [("fc2", None), ("fc2-mpo", 2),
                                                                           ("fc2-mpo", 4)]
    for s in results["summaries"]:
        assert s["runs"] == 2 and (s["mean"], s["sigma"]) == pytest.approx(mean_sigma(s["accuracies"]))
    # each reported accuracy is what its final checkpoint scores on the quick test split
    normalize = PRESETS[MODELS["fc2"].preset].for_dataset("digits").normalize
    (_, _), (test_x, test_y) = load_data("digits", None, MODELS["fc2"].input_shape, normalize=normalize, quick=True)
    for s in results["summaries"]:
        tag = s["model"] if s["bond_dim"] is None else f"{s['model']}-D{s['bond_dim']}"
        for seed, reported in enumerate(s["accuracies"]):
            model = MODELS[s["model"]].build(s["bond_dim"])
            model.load_state_dict(_final_weights(out, f"{tag}-seed{seed}"))
            with torch.no_grad():
                correct = (model.eval()(test_x).argmax(1) == test_y).sum().item()
            assert reported == pytest.approx(100.0 * correct / len(test_y)), (tag, seed)
    assert os.path.getsize(os.path.join(out, "accuracy_vs_bond_dim_quick.png")) > 0  # labelled as quick
    assert results["machine"]["commit"] is not None or results["machine"]["cpu"]
    # Rerunning finds every run finished and reuses the results.
    assert main(["--model", "fc2", "--quick", "--runs", "2", "--out", out, "--no-progress"]) == 0
    again = json.load(open(os.path.join(out, "results.json")))["summaries"][0]
    assert again["accuracies"] == results["summaries"][0]["accuracies"]


def test_accuracy_vs_depth_plot(tmp_path):
    rows = [{"model": f"resnet{d}{s}", "bond_dim": None, "mean": 90 + d / 10, "sigma": 0.2, "mpo": bool(s),
             "twin": None, "family": "resnet", "depth": d} for d in (20, 32) for s in ("", "-mpo")]
    path = accuracy_vs_depth(rows, str(tmp_path / "depth.png"))
    assert path and os.path.getsize(path) > 0


@pytest.fixture
def dropout_mpo_model(monkeypatch):
    """A small registered model with dropout (so the resume test also covers the RNG state) and an MPO layer."""

    class Net(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), pknn.MPOLinear((4, 4, 4), (2, 4, 4), d or 3), nn.ReLU(),
                                     nn.Dropout(0.3), nn.Linear(32, 10))

        def forward(self, x):
            return self.net(x)

    monkeypatch.setitem(MODELS, "tiny-mpo", ModelSpec("tiny-mpo", Net, (1, 8, 8), "fc2", "tiny", mpo=True))
    return "tiny-mpo"


@pytest.mark.parametrize("schedule", ["exp", "cosine"])
def test_resume_after_stop_gives_identical_weights(tmp_path, dropout_mpo_model, schedule):
    (x, y), test = load_data("digits", None, (1, 8, 8), normalize=True, quick=True)
    preset = PRESETS["fc2"].with_overrides(lr=0.1, momentum=0.9, batch_size=48,  # 6 steps per epoch
                                           schedule=schedule)

    def run(path, stop=0):
        cfg = RunConfig(model=dropout_mpo_model, preset=preset, epochs=3, seed=5, bond_dim=3, checkpoint_path=path,
                        stop_after_steps=stop, progress=False)
        return train_run(cfg, (x, y), test)

    full = run(str(tmp_path / "full.pt"))
    interrupted = str(tmp_path / "cut.pt")
    assert run(interrupted, stop=8) is None                 # stopped mid-epoch 2
    state = torch.load(interrupted, weights_only=False)["state"]
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    assert run(interrupted, stop=13) is None                # and again, 1 step into epoch 3
    resumed = run(interrupted)
    assert resumed["test_accuracy"] == full["test_accuracy"] and resumed["history"] == full["history"]
    a = torch.load(str(tmp_path / "full.pt"), weights_only=False)["model"]
    b = torch.load(interrupted, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # A different seed gives different weights: the comparison above can fail.
    other = RunConfig(model=dropout_mpo_model, preset=preset, epochs=1, seed=6, bond_dim=3,
                      checkpoint_path=str(tmp_path / "other.pt"), progress=False)
    train_run(other, (x, y), test)
    c = torch.load(str(tmp_path / "other.pt"), weights_only=False)["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_cosine_schedule_ends_at_zero_after_the_last_epoch():
    preset = PRESETS["taylornet"].with_overrides(lr=0.04, schedule="cosine")
    optimizer = preset.make_optimizer([nn.Parameter(torch.ones(3))])
    scheduler = preset.make_scheduler(optimizer, 5)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs == pytest.approx([0.04 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(5)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        PRESETS["taylornet"].with_overrides(schedule="linear").make_scheduler(optimizer, 5)


def _subprocess_env() -> dict:
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


@pytest.mark.slow
def test_sigkill_during_training_then_resume(tmp_path):
    """A real kill -9 while the run checkpoints every step; the rerun ends with the uninterrupted run's weights."""
    args = ["--model", "fc2-mpo", "--bond-dim", "4", "--quick", "--epochs", "20", "--no-progress", "--threads", "1",
            "--seed", "2"]  # 60 steps; the checkpoint frequency does not change the result
    ckpt = tmp_path / "cut" / "checkpoints" / "fc2-mpo-D4-seed2.pt"
    proc = subprocess.Popen([sys.executable, "-m", "models.train", *args, "--checkpoint-every", "1", "--out",
                             str(tmp_path / "cut")], cwd=REPO, env=_subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        step = 0
        while step < 4 and proc.poll() is None:
            if ckpt.exists():
                step = torch.load(str(ckpt), weights_only=False)["state"]["global_step"]
        proc.kill()
    finally:
        proc.wait(timeout=60)
    killed = torch.load(str(ckpt), weights_only=False)
    assert proc.returncode != 0 and killed["result"] is None, "the run finished before it could be killed"
    assert main(args + ["--out", str(tmp_path / "cut")]) == 0
    main(args + ["--out", str(tmp_path / "full")])
    a, b = _final_weights(str(tmp_path / "full"), "fc2-mpo-D4-seed2"), _final_weights(str(tmp_path / "cut"),
                                                                                      "fc2-mpo-D4-seed2")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(
    os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    args = ["--model", "fc2-mpo", "--bond-dim", "4", "--quick", "--no-progress", "--threads", "1", "--seed", "1",
            "--device", "cpu"]  # two gloo processes, also on a machine with one GPU
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = _subprocess_env()
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "models.train", *args,
                           "--out", str(tmp_path / "ddp")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.load(open(tmp_path / "ddp" / "results.json"))
    assert results["world_size"] == 2 and results["runs"][0]["world_size"] == 2
    main(args + ["--out", str(tmp_path / "single")])
    a, b = _final_weights(str(tmp_path / "ddp"), "fc2-mpo-D4-seed1"), _final_weights(str(tmp_path / "single"),
                                                                                      "fc2-mpo-D4-seed1")
    # Same global batches and an exactly averaged gradient: equal up to float summation order.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_driver_reads_mnist_and_cifar10_files(tmp_path):
    """--dataset mnist / cifar10 --data-dir on tiny files in the real formats, fed to 28x28 and 32x32x3 models."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 6))}
        (batches / name).write_bytes(pickle.dumps(batch))
    for dataset, model, n_test in (("mnist", "fc2", 10), ("cifar10", "taylornet-cifar10-conv", 6)):
        out = str(tmp_path / dataset)
        assert main(["--model", model, "--dataset", dataset, "--data-dir", str(tmp_path), "--quick", "--out", out,
                     "--no-progress"]) == 0
        summary = json.load(open(os.path.join(out, "results.json")))["summaries"][0]
        # scored on the files' n_test images (not the digits fallback): a whole number of correct answers
        correct = summary["mean"] * n_test / 100
        assert summary["model"] == model and correct == pytest.approx(round(correct)) and 0 <= correct <= n_test


def test_resume_with_changed_settings_is_a_clear_message(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["--model", "fc2", "--quick", "--out", out, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["--model", "fc2", "--quick", "--out", out, "--no-progress", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--fresh" in err and "Traceback" not in err


def test_densenet_conv_mpo_counts_follow_eq6():
    """The paper's DenseNet conv MPO M^{2,4,4,3,4,2}_{4,5,8,11,4,4}(20), counted by hand from Eq. 6."""
    from models.mponets import densenet_conv_mpo_accounting

    r = densenet_conv_mpo_accounting()
    assert (r["in_features"], r["out_features"]) == (4 * 5 * 8 * 11 * 4 * 4, 2 * 4 * 4 * 3 * 4 * 2)
    # every inner bond 20: D0 I1 J1 D1 + ... with D0 = D6 = 1
    assert r["n_mpo_literal_d20"] == 4 * 2 * 20 + 20 * 5 * 4 * 20 + 20 * 8 * 4 * 20 + 20 * 11 * 3 * 20 + \
        20 * 4 * 4 * 20 + 20 * 4 * 2
    # first and last bonds capped at 4 * 2 = 8 (the useful rank of a bipartition with 8 values on one side)
    assert r["ranks_capped"] == [8, 20, 20, 20, 8]
    assert r["n_mpo_capped"] == 4 * 2 * 8 + 8 * 5 * 4 * 20 + 20 * 8 * 4 * 20 + 20 * 11 * 3 * 20 + \
        20 * 4 * 4 * 8 + 8 * 4 * 2
    assert r["n_conv3x3"] == 440 * 12 * 9 and r["densenet_16_12_12_last_layer_channels"] == 436
    assert abs(r["rho_eq9_with_fc_capped"] - (r["n_mpo_capped"] + 576) / (47520 + 4480)) < 1e-12
