"""The networks of Shukla & Thakur (Sec. II B-G, Table I): linear bias-free coarse-grainers, up-scalers,
autoencoders assembled from them by transfer learning, and the inverse-temperature regressor.

Conventions follow the paper's Eq. 6: a layer maps a row vector ``y = x W`` with ``W`` of shape ``(n_in, n_out)``
(``weight_matrix(layer)`` returns it; torch stores the transpose). For an ``L x L`` lattice, ``n = L^2`` and the
common architecture is ``n - n/2 - n/4 - n/2 - n`` (1024-512-256-512-1024 for ``L = 32``).

Shallow nets (one weight matrix each), named for ``L = 32``:

=========  ==============  ===================================================
role       paper name      maps
=========  ==============  ===================================================
``CG1``    CG-1024-512     lattice ``x`` -> first decimation ``decimate(x)``
``CG2``    CG-512-256      ``decimate(x)`` -> ``decimate(decimate(x))``
``UP1``    UP-256-512      ``decimate(decimate(x))`` -> ``decimate(x)``
``UP2``    UP-512-1024     ``decimate(x)`` -> ``x``
``HCG1``   HCG-1024-512    hard-coded Eq. 7 (not trained)
``HCG2``   HCG-512-256     hard-coded Eq. 8 (not trained)
=========  ==============  ===================================================

Table I wiring of the deep nets (layer -> source; ``None``: trained by back-propagation, a name: weights
transferred from that shallow net and frozen): see :data:`TABLE_I`. ``model3h`` is the fully hard-coded variant
of Model 3 the paper mentions at the end of Sec. III A (HCG encoders, trained UP decoders).
"""

from __future__ import annotations

import torch
from torch import nn

from .decimation import decimation_weights

LAYERS = ("enc1", "enc2", "dec1", "dec2")

TABLE_I: dict[str, dict[str, str | None]] = {
    "model1": {"enc1": None, "enc2": None, "dec1": None, "dec2": None},
    "model2": {"enc1": "HCG1", "enc2": "HCG2", "dec1": None, "dec2": None},
    "model3": {"enc1": "CG1", "enc2": "CG2", "dec1": "UP1", "dec2": "UP2"},
    "model3h": {"enc1": "HCG1", "enc2": "HCG2", "dec1": "UP1", "dec2": "UP2"},
}

SHALLOW_ROLES = ("CG1", "CG2", "UP1", "UP2")
HARD_CODED_ROLES = ("HCG1", "HCG2")


def _check_L(L: int) -> int:
    if not isinstance(L, int) or L < 2 or L % 2:
        raise ValueError(f"L must be an even integer >= 2 (lattices are decimated twice), got {L!r}")
    return L


def layer_sizes(L: int) -> tuple[int, int, int, int, int]:
    """Widths ``(n, n/2, n/4, n/2, n)`` of the common architecture for ``L x L`` lattices."""
    n = _check_L(L) ** 2
    return n, n // 2, n // 4, n // 2, n


def shallow_shape(role: str, L: int) -> tuple[int, int]:
    """``(n_in, n_out)`` of a shallow net role (``CG1``, ``CG2``, ``UP1``, ``UP2``, ``HCG1``, ``HCG2``)."""
    n = _check_L(L) ** 2
    shapes = {"CG1": (n, n // 2), "CG2": (n // 2, n // 4), "UP1": (n // 4, n // 2), "UP2": (n // 2, n),
              "HCG1": (n, n // 2), "HCG2": (n // 2, n // 4)}
    if role not in shapes:
        raise ValueError(f"role must be one of {tuple(shapes)}, got {role!r}")
    return shapes[role]


def shallow_name(role: str, L: int) -> str:
    """The paper's name of a shallow net, e.g. ``shallow_name("CG1", 32) == "CG-1024-512"``."""
    n_in, n_out = shallow_shape(role, L)
    return f"{role.rstrip('12')}-{n_in}-{n_out}"


def linear_layer(n_in: int, n_out: int, bias: bool = False) -> nn.Linear:
    """A dense layer initialised like Keras' default (Glorot uniform weights, zero bias)."""
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def weight_matrix(layer: nn.Linear) -> torch.Tensor:
    """The paper's ``W`` (``(n_in, n_out)``, ``y = x W``) of a layer, detached."""
    return layer.weight.detach().t()


def set_weight_matrix(layer: nn.Linear, weights: torch.Tensor) -> None:
    """Copy the paper-convention matrix ``weights`` (``(n_in, n_out)``) into ``layer``."""
    expected = (layer.in_features, layer.out_features)
    if tuple(weights.shape) != expected:
        raise ValueError(f"weights must have shape {expected}, got {tuple(weights.shape)}")
    with torch.no_grad():
        layer.weight.copy_(weights.t())


def shallow_net(role: str, L: int) -> nn.Linear:
    """A shallow net (one linear, bias-free layer). ``HCG*`` roles come with the hard-coded Eq. 7/8 weights and
    frozen; the others are freshly initialised and trainable."""
    layer = linear_layer(*shallow_shape(role, L))
    if role in HARD_CODED_ROLES:
        set_weight_matrix(layer, decimation_weights(L, step=int(role[-1])))
        layer.weight.requires_grad_(False)
    return layer


class LinearAutoencoder(nn.Module):
    """The common architecture ``n - n/2 - n/4 - n/2 - n``: four linear layers, no biases (Eq. 6).

    ``encode``: ``(B, n) -> (B, n/4)``; ``forward``: ``(B, n) -> (B, n)``. ``sources`` records, per layer, the
    shallow net its weights were transferred from (``None``: trained here).
    """

    def __init__(self, L: int):
        super().__init__()
        n, h1, h2, h3, out = layer_sizes(L)
        self.L = L
        self.enc1, self.enc2 = linear_layer(n, h1), linear_layer(h1, h2)
        self.dec1, self.dec2 = linear_layer(h2, h3), linear_layer(h3, out)
        self.sources: dict[str, str | None] = {name: None for name in LAYERS}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc2(self.enc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec2(self.dec1(self.encode(x)))

    def trainable(self) -> dict[str, bool]:
        """Which layers back-propagation updates."""
        return {name: getattr(self, name).weight.requires_grad for name in LAYERS}


def build_model(kind: str, L: int, shallow: dict[str, nn.Linear] | None = None) -> LinearAutoencoder:
    """Assemble Model 1/2/3 (or the hard-coded ``model3h``) as in Table I.

    ``shallow`` maps roles (``CG1``, ``CG2``, ``UP1``, ``UP2``) to trained shallow nets; ``HCG*`` roles are built
    here from Eq. 7/8. Transferred layers are copies of the shallow nets' weights and are frozen.
    """
    if kind not in TABLE_I:
        raise ValueError(f"kind must be one of {tuple(TABLE_I)}, got {kind!r}")
    shallow = dict(shallow or {})
    model = LinearAutoencoder(L)
    for layer_name, role in TABLE_I[kind].items():
        if role is None:
            continue
        if role in HARD_CODED_ROLES:
            source = shallow_net(role, L)
        elif role in shallow:
            source = shallow[role]
        else:
            raise ValueError(f"{kind} needs the trained shallow net {role} ({shallow_name(role, L)}); "
                             f"got only {sorted(shallow)}")
        layer = getattr(model, layer_name)
        set_weight_matrix(layer, weight_matrix(source).to(layer.weight.dtype))
        layer.weight.requires_grad_(False)
        model.sources[layer_name] = role
    return model


class BetaRegressor(nn.Module):
    """Inverse-temperature regressor of Sec. II G (Eq. 9-11): ``n -> n/2 (tanh) -> 1 (ReLU)``, with biases.

    ``(B, n)`` linearised lattices -> ``(B,)`` predicted beta. (For ``L = 32``: 1024-512-1.)

    Initialisation: the hidden layer as in Keras (Glorot uniform, zero bias). The output layer starts as the
    constant predictor ``beta = initial_beta`` (zero weights, bias ``initial_beta``; pass the mean training
    target). With Keras' default output layer instead (``initial_beta=None``: Glorot weights, zero bias) the
    initial pre-activation of the ReLU is ``N(0, ~1)``: half the lattices start in the ReLU's flat zero region,
    the first updates push most of the rest there too, and training stalls at a dead output (see docs/ising-rg.md).
    """

    def __init__(self, L: int, initial_beta: float | None = 0.3):
        super().__init__()
        n = _check_L(L) ** 2
        self.L = L
        self.hidden = linear_layer(n, n // 2, bias=True)
        self.out = linear_layer(n // 2, 1, bias=True)
        if initial_beta is not None:
            if not initial_beta > 0:
                raise ValueError(f"initial_beta must be > 0 (inside the ReLU's active region), got {initial_beta!r}")
            with torch.no_grad():
                self.out.weight.zero_()
                self.out.bias.fill_(float(initial_beta))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.out(torch.tanh(self.hidden(x)))).squeeze(-1)

    def dead_fraction(self, x: torch.Tensor) -> float:
        """Fraction of the rows of ``x`` ``(B, n)`` on which the output ReLU is inactive (zero gradient)."""
        with torch.no_grad():
            return float((self.out(torch.tanh(self.hidden(x))) <= 0).float().mean())


def hinge_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras' hinge loss for +-1 targets: ``mean(max(0, 1 - target * prediction))``."""
    return torch.clamp(1.0 - target * prediction, min=0.0).mean()


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((prediction - target) ** 2)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """``sum |w|`` over the trainable weight matrices (not biases), Keras' ``l1`` kernel regulariser."""
    terms = [p.abs().sum() for name, p in model.named_parameters() if p.requires_grad and name.endswith("weight")]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def to_spins(output: torch.Tensor) -> torch.Tensor:
    """Read a network output as a spin lattice: ``+1`` where ``output > 0``, else ``-1`` (same dtype)."""
    return torch.where(output > 0, 1.0, -1.0).to(output.dtype)
