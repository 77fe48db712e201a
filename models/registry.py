"""Every model by name: ``build(name, bond_dim=None)`` and ``MODELS[name]`` (a :class:`ModelSpec`).

Names: ``fc2``/``fc2-mpo``, ``lenet5``/``lenet5-mpo``, ``vgg16``/``vgg16-mpo``, ``vgg19``/``vgg19-mpo``,
``resnet{20,32,44,56}``/``-mpo`` (k = 4; ``resnet56-mpo-unit`` also makes the last ResUnit an MPO),
``densenet-{n}-{m}-{k}``/``-mpo`` for Table II's four (n, m, k), ``taylornet-mnist``, ``taylornet-7x7``,
``taylornet-cifar10`` and their CG->conv ablations ``...-conv``. Every ``-mpo`` model's dense twin is the same
name without ``-mpo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import nn

from .mponets import DENSENET_FC_SHAPES, FC2, VGG, DenseNet, LeNet5, ResNet
from .taylornet import TAYLORNET_SPECS, TaylorNet


@dataclass(frozen=True)
class ModelSpec:
    """``factory(bond_dim)`` builds the model; ``input_shape`` (C, H, W) it expects; ``preset`` its training
    preset (models.presets); ``family`` and ``depth`` group models in plots; ``twin`` the dense twin's name."""

    name: str
    factory: Callable[[int | None], nn.Module]
    input_shape: tuple[int, int, int]
    preset: str
    family: str
    depth: int | None = None
    mpo: bool = False
    twin: str | None = None

    def build(self, bond_dim: int | None = None) -> nn.Module:
        if bond_dim is not None and (not isinstance(bond_dim, int) or bond_dim < 1):
            raise ValueError(f"bond_dim must be a positive int or None, got {bond_dim!r}")
        if bond_dim is not None and not self.mpo:
            raise ValueError(f"model {self.name!r} has no MPO layers, so bond_dim must be None")
        return self.factory(bond_dim)


MODELS: dict[str, ModelSpec] = {}


def _register(name: str, make: Callable[..., nn.Module], input_shape, preset: str, family: str,
              depth: int | None = None, mpo_variant: bool = True) -> None:
    MODELS[name] = ModelSpec(name, lambda d: make(mpo=False), input_shape, preset, family, depth)
    if mpo_variant:
        MODELS[f"{name}-mpo"] = ModelSpec(f"{name}-mpo", lambda d: make(mpo=True, bond_dim=d), input_shape,
                                          preset, family, depth, mpo=True, twin=name)


_register("fc2", FC2, FC2.input_shape, "fc2", "fc2", depth=2)
_register("lenet5", LeNet5, LeNet5.input_shape, "lenet5", "lenet5", depth=5)
for _depth in (16, 19):
    _register(f"vgg{_depth}", partial(VGG, _depth), VGG.input_shape, "vgg", "vgg", depth=_depth)
for _depth in (20, 32, 44, 56):
    _register(f"resnet{_depth}", partial(ResNet, _depth, 4), ResNet.input_shape, "resnet", "resnet", depth=_depth)
MODELS["resnet56-mpo-unit"] = ModelSpec(
    "resnet56-mpo-unit", lambda d: ResNet(56, 4, mpo=True, mpo_unit=True, bond_dim=d), ResNet.input_shape,
    "resnet", "resnet-unit", 56, mpo=True, twin="resnet56")
for _n, _m, _k in DENSENET_FC_SHAPES:
    _register(f"densenet-{_n}-{_m}-{_k}", partial(DenseNet, _n, _m, _k), DenseNet.input_shape, "densenet",
              "densenet", depth=3 * _m + 4)
for _variant, _label in (("mnist", "mnist"), ("mnist7x7", "7x7"), ("cifar10", "cifar10")):
    _shape = TAYLORNET_SPECS[_variant][0]
    for _suffix, _conv in (("", False), ("-conv", True)):
        MODELS[f"taylornet-{_label}{_suffix}"] = ModelSpec(
            f"taylornet-{_label}{_suffix}", partial(lambda v, c, d: TaylorNet(v, cg_as_conv=c), _variant, _conv),
            _shape, "taylornet", "taylornet", twin=None)


def build(name: str, bond_dim: int | None = None) -> nn.Module:
    """Build model ``name`` (see the module docstring); ``bond_dim`` only for ``-mpo`` models."""
    return spec(name).build(bond_dim)


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]
