"""``physkernels.compress(model, bond_dim)``: replace a model's nn.Linear / nn.Conv2d layers by MPO layers.

Each replaced layer is initialised by TT-SVD of its trained weight (:func:`physkernels.mpo.tt_svd`), so the
compressed model starts as the best-effort MPO approximation of the original and can be fine-tuned. The returned
:class:`CompressionReport` lists, per layer, the weight shape, factorisation, ranks, parameters before/after and the
relative truncation error, plus the overall compression ratio (Eq. 9).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Iterable, Mapping

from torch import nn

from ..mpo.factorization import check_positive_int
from ..mpo.tensor_train import compression_ratio
from .mpo import MPOConv2d, MPOLinear

_CONVERTERS = {nn.Linear: MPOLinear.from_linear, nn.Conv2d: MPOConv2d.from_conv}


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """One layer of :func:`compress`: ``replaced`` is False (with ``reason``) when it was left dense."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    ranks: tuple[int, ...] | None
    params_before: int
    params_after: int
    error: float | None
    replaced: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """Per-layer rows and the totals over the replaced layers (weights only; biases are kept as they were)."""

    layers: list[LayerReport]

    @property
    def replaced(self) -> list[LayerReport]:
        return [row for row in self.layers if row.replaced]

    @property
    def params_before(self) -> int:
        return sum(row.params_before for row in self.replaced)

    @property
    def params_after(self) -> int:
        return sum(row.params_after for row in self.replaced)

    @property
    def compression_ratio(self) -> float:
        """Eq. 9: ``sum_l N_mpo^(l) / sum_l N_ori^(l)`` over the replaced layers (nan when none was)."""
        if not self.params_before:
            return float("nan")
        return compression_ratio([(row.params_after, row.params_before) for row in self.replaced])

    def to_dict(self) -> dict:
        """JSON-ready: the rows and the totals."""
        return {"layers": [dataclasses.asdict(row) for row in self.layers], "params_before": self.params_before,
                "params_after": self.params_after, "compression_ratio": self.compression_ratio}

    def to_markdown(self) -> str:
        lines = ["| layer | kind | weight | MPO | ranks | params before | params after | rel. error | note |",
                 "|---|---|---|---|---|---:|---:|---:|---|"]
        for r in self.layers:
            mpo = f"{r.in_shape} -> {r.out_shape}" if r.in_shape else ""
            error = f"{r.error:.3e}" if r.error is not None else ""
            lines.append(f"| {r.name} | {r.kind} | {tuple(r.weight_shape)} | {mpo} | {r.ranks or ''} | "
                         f"{r.params_before} | {r.params_after} | {error} | {r.reason} |")
        lines.append(f"\nreplaced {len(self.replaced)} of {len(self.layers)} layers: {self.params_before} -> "
                     f"{self.params_after} weight parameters, compression ratio (Eq. 9) {self.compression_ratio:.4g}")
        return "\n".join(lines)

    __str__ = to_markdown


def _named_targets(model: nn.Module, include) -> list[tuple[str, nn.Module]]:
    """The nn.Linear / nn.Conv2d submodules (exact types: subclasses may change forward) that ``include`` selects."""
    if isinstance(include, str):
        raise TypeError(f"include must be a collection of layer names or a predicate, got the string {include!r} "
                        f"(write [{include!r}])")
    if include is not None and not callable(include):
        include = set(include)
    targets = []
    for name, module in model.named_modules():
        if type(module) not in _CONVERTERS:
            continue
        if include is None or (include(name, module) if callable(include) else name in include):
            if name == "":
                raise ValueError(f"model is itself an nn.{type(module).__name__} and cannot be replaced in place: "
                                 f"use MPOLinear.from_linear / MPOConv2d.from_conv")
            targets.append((name, module))
    return targets


def _check_layer_names(mapping: Mapping, targets, argument: str) -> None:
    unknown = set(mapping) - {name for name, _ in targets}
    if unknown:
        raise ValueError(f"{argument} names layers that are not selected nn.Linear/nn.Conv2d layers of model: "
                         f"{sorted(unknown)}")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


DEFAULT_BOND_DIM = 8  # the middle of the MPO-Net paper's range of bond dimensions (D = 2 ... 16)


def compress(model: nn.Module, bond_dim=DEFAULT_BOND_DIM, *, num_cores: int = 4,
             shapes: Mapping[str, tuple] | None = None,
             include: Iterable[str] | Callable[[str, nn.Module], bool] | None = None,
             min_compression: float = 1.0) -> CompressionReport:
    """Replace ``model``'s nn.Linear and nn.Conv2d layers, in place, by MPOLinear / MPOConv2d from TT-SVD.

    Args:
        model: modified in place (deep-copy it first to keep the original).
        bond_dim: D for every layer (int, n-1 ints, or a float in (0, 1]: that fraction of each bond's full
            rank), or a mapping from layer name to D (then only the layers it names are compressed); clipped per
            bond to the maximal useful rank. Default :data:`DEFAULT_BOND_DIM` = 8, the middle of the paper's
            range (D = 2 ... 16).
        num_cores: n used to factorise layers without an entry in ``shapes`` (:func:`factorize`).
        shapes: optional ``{layer name: (in_shape, out_shape)}`` overriding the factorisation.
        include: which layers to consider: names, or a predicate ``(name, module) -> bool``; default all.
        min_compression: keep a layer dense unless ``params_after < min_compression * params_before``
            (default: only replace layers whose MPO is smaller).

    Returns:
        :class:`CompressionReport` with one row per considered layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    num_cores = check_positive_int(num_cores, "num_cores")
    shapes = dict(shapes or {})
    targets = _named_targets(model, include)
    _check_layer_names(shapes, targets, "shapes")
    if isinstance(bond_dim, Mapping):
        _check_layer_names(bond_dim, targets, "bond_dim")
        targets = [(name, module) for name, module in targets if name in bond_dim]
    rows = []
    for name, module in targets:
        layer_bond = bond_dim[name] if isinstance(bond_dim, Mapping) else bond_dim
        in_shape, out_shape = shapes.get(name, (None, None))
        with warnings.catch_warnings():  # an uncompressed layer is kept dense and reported in the row instead
            warnings.simplefilter("ignore")
            new = _CONVERTERS[type(module)](module, in_shape, out_shape, layer_bond, num_cores=num_cores)
        before, after = module.weight.numel(), new.num_parameters
        replace = after < min_compression * before
        rows.append(LayerReport(
            name=name, kind=type(module).__name__, weight_shape=tuple(module.weight.shape),
            in_shape=new.in_shape, out_shape=new.out_shape, ranks=new.ranks, params_before=before,
            params_after=after if replace else before, error=new.truncation_error if replace else 0.0,
            replaced=replace, reason="" if replace else f"kept dense: MPO would have {after} parameters"))
        if replace:
            _replace(model, name, new)
    return CompressionReport(rows)
