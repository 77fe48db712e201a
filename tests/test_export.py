"""``torch.export`` records each op as its ``physkernels`` custom op (never the eager fast path), and the exported
program computes what the layer computes (CG2d: tests/test_cg2d.py)."""

import pytest
import torch

from physkernels.nn import MPOLinear, TaylorLinear

LAYERS = {
    "mpo_linear": (lambda: MPOLinear((4, 7), (2, 3), bond_dim=3), (5, 28)),
    "taylor_linear": (lambda: TaylorLinear(4, 3, order=2), (5, 4)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_export_records_the_custom_op(name):
    make, shape = LAYERS[name]
    torch.manual_seed(0)
    layer, x = make(), torch.randn(*shape)
    exported = torch.export.export(layer, (x,))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert f"physkernels.{name}.default" in targets
    torch.testing.assert_close(exported.module()(x), layer(x))
