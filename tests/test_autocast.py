"""Mixed precision: every op and layer under ``torch.autocast`` on every device.

Under autocast the ops cast their float32 arguments to the autocast dtype (as F.linear does) and run there through
the reference formulas (the compiled kernels run float32 and float64); the products accumulate in float32 inside
torch's matmuls. Checked against the float64 reference with a normwise bound of a few units of the dtype's
roundoff (bfloat16 2^-8, float16 2^-11), in values and in the float32 gradients of the original arguments.
"""

import math

import pytest
import torch

import physkernels
from physkernels.backends import BackendUnavailableError
from physkernels.ops import cg2d, mpo_linear, taylor_linear
from physkernels.ops.cg2d import reference_cg2d
from physkernels.ops.mpo_linear import reference_mpo_linear
from physkernels.ops.taylor_linear.reference import reference_taylor_linear
from physkernels.taylor import monomial_count
from physkernels.testing import check_against_float64_reference, run_with_grads
from devices import _param, DEVICES

# normwise relative error allowed per autocast dtype: ~8 units of its roundoff (inputs, features and outputs are
# each rounded once; a wrong formula is off by O(1))
BOUND = {torch.bfloat16: 8 * 2.0 ** -8, torch.float16: 8 * 2.0 ** -11}
CASES = [_param(d, t) for d in DEVICES for t in (torch.bfloat16, torch.float16)]


def _mpo_args(device):
    gen = torch.Generator().manual_seed(3)
    in_shape, out_shape, bonds = (2, 3, 4), (3, 2, 2), (1, 3, 2, 1)
    cores = [torch.randn(bonds[k], in_shape[k], out_shape[k], bonds[k + 1], generator=gen) / 2 for k in range(3)]
    x = torch.randn(7, math.prod(in_shape), generator=gen)
    bias = torch.randn(math.prod(out_shape), generator=gen)
    return [t.to(device) for t in (x,)] + [[c.to(device) for c in cores], bias.to(device)]


def _cg2d_args(device):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, 7, generator=gen)
    weight, weight2 = torch.randn(4, 3, 2, 2, generator=gen) / 3, torch.randn(4, 3, 10, generator=gen) / 5
    return [t.to(device) for t in (x, weight, weight2, torch.randn(4, generator=gen))]


def _taylor_args(device):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 5, generator=gen) / 2
    weight = torch.randn(4, monomial_count(5, 2), generator=gen) / 4
    return [t.to(device) for t in (x, weight, torch.randn(4, generator=gen))]


OPS = {
    "mpo_linear": (mpo_linear, reference_mpo_linear, _mpo_args),
    "cg2d": (lambda x, w, w2, b: cg2d(x, w, w2, b, stride=1, padding=1),
             lambda x, w, w2, b: reference_cg2d(x, w, w2, None, b, stride=(1, 1), padding=(1, 1)), _cg2d_args),
    "taylor_linear": (lambda x, w, b: taylor_linear(x, w, b, 2), lambda x, w, b: reference_taylor_linear(x, w, b, 2),
                      _taylor_args),
}


def _under_autocast(fn, device, dtype):
    def call(*args):
        with torch.autocast(device, dtype=dtype):
            return fn(*args)
    return call


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("device,dtype", CASES)
def test_op_under_autocast_matches_float64(name, device, dtype):
    op, reference, make_args = OPS[name]
    args = make_args(device)
    out, grads = run_with_grads(_under_autocast(op, device, dtype), args)
    assert out[0].dtype == dtype, f"{name} under autocast returned {out[0].dtype}, expected {dtype}"
    assert all(g.dtype == torch.float32 for g in grads), "gradients must reach the float32 arguments as float32"
    check_against_float64_reference(_under_autocast(op, device, dtype), reference, args, rel=BOUND[dtype])


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("device", [_param(d) for d in DEVICES])
def test_float64_arguments_are_not_cast(name, device):
    op, reference, make_args = OPS[name]
    args = [[t.double() for t in a] if isinstance(a, list) else a.double() for a in make_args(device)]
    with torch.autocast(device, dtype=torch.bfloat16):
        got = op(*args)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference(*args), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(OPS))
def test_naming_a_compiled_backend_for_bfloat16_raises(name):
    op, _, make_args = OPS[name]
    args = make_args("cpu")
    with physkernels.use_backend("cpp"), pytest.raises(BackendUnavailableError, match="bfloat16"):
        _under_autocast(op, "cpu", torch.bfloat16)(*args)


@pytest.mark.parametrize("model", ["fc2-mpo", "lenet5-mpo", "taylornet-7x7"])
@pytest.mark.parametrize("device", [_param(d) for d in DEVICES])
def test_paper_models_train_under_autocast(model, device):
    """A training step of a model mixing our layers with torch's under autocast: bfloat16 logits close to the
    float32 model's, float32 gradients close to the float32 model's."""
    from models.registry import MODELS

    spec = MODELS[model]
    torch.manual_seed(0)
    net = spec.build().to(device)
    x = torch.randn(4, *spec.input_shape, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        logits = net(x)
    assert logits.dtype == torch.bfloat16
    logits.float().square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    exact = net(x)
    exact.square().sum().backward()
    assert (logits.float() - exact).norm() <= 0.05 * exact.norm()
    for p, g in zip(net.parameters(), grads):
        assert g.dtype == torch.float32
        assert (g - p.grad).norm() <= 0.1 * p.grad.norm() + 1e-6
