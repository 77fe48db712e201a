"""Ensemble backends: evaluate many networks and accumulate Green-function products per bag.

Two primitives, each with ``reference`` (plain torch), ``cpp`` (C++/OpenMP), ``triton`` and ``cuda`` backends
picked by :class:`physkernels.backends.OpDispatcher` (``physkernels.use_backend`` selects one):

* ``outputs(points, law, first_net, n_nets)`` -> (n_nets, n_points) float64: f_a(x_k) for networks
  first_net .. first_net + n_nets - 1.
* ``bag_sums(points, law, first_bag, n_bags, nets_per_bag, table)`` -> (n_bags, n_combos) float64:
  (1 / n_nets) sum_a prod_{i in combo} f_a(x_i) (Eq. 3.3) for every combo of ``table``; network a of bag b has the
  global index b * nets_per_bag + a, so any split of the bags (threads, ranks, GPUs) gives the same numbers.

Every backend draws the parameters of network a from Philox keyed by (seed, a) (see :mod:`.philox`), so the
C++, CUDA and reference paths evaluate the same networks; they differ only by float rounding (the kernels compute
activations in float32 and accumulate in float64). These are sampling primitives without gradients, so they are
plain functions rather than autograd custom ops.
"""

from __future__ import annotations

import math

import torch

from ... import _extensions
from ..._kernel_args import Out, launch
from ...backends import OpDispatcher
from .combos import ComboTable
from .network import NetworkLaw
from .philox import BIAS_NEURON, box_muller, neuron_normals, philox4x32_10

NETS_PER_CHUNK = 256  # networks per partial sum; partials are reduced in chunk order (thread-count independent)
_NEURON_ELEMENTS = 1 << 18  # reference path: networks x neurons drawn at once

_outputs = OpDispatcher("nnqft_outputs", auto_order={"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton")})
_bag_sums = OpDispatcher("nnqft_bag_sums", auto_order={"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton")})


def _activate(pre: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "gauss":
        return torch.exp(pre)
    if activation == "erf":
        return torch.erf(pre)
    return torch.relu(pre)


def reference_outputs(points: torch.Tensor, law: NetworkLaw, first_net: int, n_nets: int) -> torch.Tensor:
    """Plain-torch float64 evaluation of the networks (the independent reference of the kernels)."""
    n_points, d_in = points.shape
    device = points.device
    shift = torch.zeros(n_points, dtype=torch.float64, device=device)
    if law.activation == "gauss":
        shift = law.sigma_b**2 + law.sigma_w**2 * (points * points).sum(1) / d_in
    nets = torch.arange(first_net, first_net + n_nets, dtype=torch.int64, device=device)
    out = torch.zeros(n_nets, n_points, dtype=torch.float64, device=device)
    step = max(1, _NEURON_ELEMENTS // max(1, n_nets))
    for j0 in range(0, law.width, step):
        neurons = torch.arange(j0, min(law.width, j0 + step), dtype=torch.int64, device=device)
        z = neuron_normals(neurons, nets, law.seed, 2 + d_in)  # (n_nets, n_neurons, 2 + d_in)
        w1 = z[..., 0] * (law.sigma_w / math.sqrt(law.width))
        b0 = z[..., 1] * law.sigma_b
        w0 = z[..., 2:] * (law.sigma_w / math.sqrt(d_in))
        pre = torch.einsum("ani,ki->ank", w0, points) + b0[..., None] - shift
        out += torch.einsum("an,ank->ak", w1, _activate(pre, law.activation))
    r = philox4x32_10((torch.full_like(nets, BIAS_NEURON), torch.zeros_like(nets), nets & 0xFFFFFFFF, nets >> 32),
                      law.seed)
    return out + (box_muller(r[0], r[1])[0] * law.sigma_b)[:, None]


def reference_bag_sums(points: torch.Tensor, law: NetworkLaw, first_bag: int, n_bags: int, nets_per_bag: int,
                       table: ComboTable) -> torch.Tensor:
    """Plain-torch Eq. 3.3 per bag, summing chunks of NETS_PER_CHUNK networks in order like the kernels."""
    out = torch.empty(n_bags, table.n_combos, dtype=torch.float64, device=points.device)
    for bag in range(n_bags):
        total = torch.zeros(table.n_combos, dtype=torch.float64, device=points.device)
        for begin in range(0, nets_per_bag, NETS_PER_CHUNK):
            count = min(NETS_PER_CHUNK, nets_per_bag - begin)
            f = reference_outputs(points, law, (first_bag + bag) * nets_per_bag + begin, count)
            total += table.products(f).sum(0)
        out[bag] = total / nets_per_bag
    return out


@_outputs.register("reference")
def _(points, law, first_net, n_nets):
    return reference_outputs(points, law, first_net, n_nets)


@_bag_sums.register("reference")
def _(points, law, first_bag, n_bags, nets_per_bag, table):
    return reference_bag_sums(points, law, first_bag, n_bags, nets_per_bag, table)


def _spec_args(points: torch.Tensor, law: NetworkLaw) -> tuple:
    return (points, points.shape[0], points.shape[1], law.width, float(law.sigma_w), float(law.sigma_b),
            law.activation_code, law.seed)


@_outputs.register("cpp")
def _(points, law, first_net, n_nets):
    out = torch.empty(n_nets, points.shape[0], dtype=torch.float64)
    launch(_extensions.cpu().nnqft.outputs, *_spec_args(points, law), first_net, n_nets, Out(out),
           torch.get_num_threads(), dtype=torch.float64)
    return out


@_bag_sums.register("cpp")
def _(points, law, first_bag, n_bags, nets_per_bag, table):
    module = _extensions.cpu().nnqft
    n_chunks = -(-nets_per_bag // module.nets_per_chunk)
    partial = torch.empty(n_bags * n_chunks * table.n_combos, dtype=torch.float64)
    out = torch.empty(n_bags, table.n_combos, dtype=torch.float64)
    launch(module.green, *_spec_args(points, law), first_bag, n_bags, nets_per_bag, table.parent, table.point,
           table.n_combos, Out(partial), Out(out), torch.get_num_threads(), dtype=torch.float64)
    return out


@_outputs.register("cuda")
def _(points, law, first_net, n_nets):
    out = torch.empty(n_nets, points.shape[0], dtype=torch.float64, device=points.device)
    launch(_extensions.cuda().nnqft.outputs, *_spec_args(points, law), first_net, n_nets, Out(out),
           torch.cuda.current_stream(points.device).cuda_stream, dtype=torch.float64)
    return out


@_bag_sums.register("cuda")
def _(points, law, first_bag, n_bags, nets_per_bag, table):
    module = _extensions.cuda().nnqft
    n_chunks = -(-nets_per_bag // module.nets_per_block)
    partial = torch.empty(n_bags * n_chunks * table.n_combos, dtype=torch.float64, device=points.device)
    out = torch.empty(n_bags, table.n_combos, dtype=torch.float64, device=points.device)
    members = table.members.to(points.device, torch.int32)
    launch(module.green, *_spec_args(points, law), first_bag, n_bags, nets_per_bag, members, table.max_order,
           table.n_combos, Out(partial), Out(out), torch.cuda.current_stream(points.device).cuda_stream,
           dtype=torch.float64)
    return out


@_outputs.register("triton")
def _(points, law, first_net, n_nets):
    from .triton_kernels import triton_outputs

    return triton_outputs(points, law, first_net, n_nets)


@_bag_sums.register("triton")
def _(points, law, first_bag, n_bags, nets_per_bag, table):
    from .triton_kernels import triton_bag_sums

    return triton_bag_sums(points, law, first_bag, n_bags, nets_per_bag, table)


def outputs(points: torch.Tensor, law: NetworkLaw, first_net: int, n_nets: int,
            backend: str | None = None) -> torch.Tensor:
    """f_a(x_k), shape (n_nets, n_points), with the selected backend (validated inputs)."""
    return _outputs.get(points.device, backend)(points, law, first_net, n_nets)


def bag_sums(points: torch.Tensor, law: NetworkLaw, first_bag: int, n_bags: int, nets_per_bag: int,
             table: ComboTable, backend: str | None = None) -> torch.Tensor:
    """Per-bag empirical Green functions, shape (n_bags, n_combos), with the selected backend."""
    if n_bags == 0:
        return torch.empty(0, table.n_combos, dtype=torch.float64, device=points.device)
    return _bag_sums.get(points.device, backend)(points, law, first_bag, n_bags, nets_per_bag, table)


def resolve_backend(device: torch.device | str, backend: str | None = None) -> str:
    """The backend that ``bag_sums`` will use on ``device``."""
    return _bag_sums.resolve(device, backend)
