"""Training presets: SGD (with momentum) on cross entropy + alpha/2 sum |w|^2 (Eq. 7 of the MPO paper).

* ``fc2``: the paper's code for FC2 (github.com/zfgao66/deeplearning-mpo, FC2/*/hyperprameter.py): lr 0.8 decayed
  by 0.99 per epoch, batch 100, alpha = 1e-4. That code uses plain gradient descent (TensorFlow's
  GradientDescentOptimizer), so the preset's momentum is 0; ``--momentum`` overrides it (with momentum 0.9 an lr
  of 0.8 diverges). On the 1347 bundled digits (14 steps per epoch) lr 0.8 kills the dense FC2 (10% accuracy)
  and makes the MPO-Net diverge; at lr 0.3 both reach ~96.3% but the D = 2 MPO-Net diverged in 1 of 4 runs,
  so the digits setting is lr 0.2 with the gradient norm clipped at 5.
* ``vgg``: the paper's VGG setting: Nesterov momentum 0.9, lr 0.1 multiplied by sqrt(0.1) every 50 epochs,
  weight decay 2e-4, batch 100.
* ``lenet5``, ``resnet``, ``densenet``, ``taylornet``: not given in the papers; ours (documented in
  docs/models.md): ResNet/DenseNet reuse the VGG schedule. TaylorNet (no activations, so a polynomial of
  degree 2^(number of CG layers) in the input): lr 0.03 was the best of {0.01, 0.03, 0.1} on 7x7 digits
  (0.1 diverges); the four-CG MNIST net diverges within 20 steps even at lr 0.01 unless the gradient norm is
  clipped, so the preset clips it at 1. The lr follows a cosine to 0 at the end of the run: the nets fit the
  digits training set completely (cross entropy ~1e-4) well before the end, and with a schedule that ends at a
  finite lr (0.95^epoch) the final-epoch test accuracy of the Fig. 5 net jittered by ~1 point between epochs;
  with the cosine the last epochs agree (chosen on a validation split of the training set, docs/models.md).

Inputs are in [0, 1] for fc2 and lenet5 (as in the paper's MNIST code) and standardised per channel otherwise.
``epochs`` is per data set: the paper-scale runs on MNIST/CIFAR-10, and a short one for the bundled digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class TrainPreset:
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    l2: float = 1e-4               # alpha of Eq. 7
    batch_size: int = 100
    schedule: str = "exp"          # "exp": lr * gamma**epoch; "step": lr * gamma**(epoch // step_epochs);
                                   # "cosine": lr * (1 + cos(pi * epoch / epochs)) / 2, reaching 0 after the last epoch
    gamma: float = 0.99
    step_epochs: int = 50
    clip_grad_norm: float | None = None  # clip the global gradient norm before each step (None: no clipping)
    normalize: bool = True         # standardise inputs per channel with the training set's mean and std
    epochs: dict = field(default_factory=lambda: {"digits": 60, "mnist": 100, "cifar10": 300})
    per_dataset: dict = field(default_factory=dict)  # data set -> {field: value} applied on top (see for_dataset)

    def for_dataset(self, dataset: str) -> "TrainPreset":
        """This preset with the overrides it lists for ``dataset``."""
        return replace(self, **self.per_dataset.get(dataset, {}))

    def with_overrides(self, **overrides) -> "TrainPreset":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
        """Stepped once per epoch; ``epochs`` is the length of the run (the cosine schedule ends at 0 there)."""
        if self.schedule == "exp":
            return torch.optim.lr_scheduler.ExponentialLR(optimizer, self.gamma)
        if self.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, self.step_epochs, self.gamma)
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        raise ValueError(f"schedule must be 'exp', 'step' or 'cosine', got {self.schedule!r}")


_SQRT_TENTH = math.sqrt(0.1)

PRESETS: dict[str, TrainPreset] = {
    "fc2": TrainPreset(lr=0.8, momentum=0.0, normalize=False, l2=1e-4, batch_size=100, schedule="exp", gamma=0.99,
                       epochs={"digits": 40, "mnist": 500, "cifar10": 500}, per_dataset={"digits": {"lr": 0.2, "clip_grad_norm": 5.0}}),
    "lenet5": TrainPreset(lr=0.05, momentum=0.9, normalize=False, l2=1e-4, batch_size=100, schedule="exp", gamma=0.99,
                          epochs={"digits": 40, "mnist": 100, "cifar10": 100}),
    "vgg": TrainPreset(lr=0.1, momentum=0.9, nesterov=True, l2=2e-4, batch_size=100, schedule="step",
                       gamma=_SQRT_TENTH, step_epochs=50, epochs={"digits": 30, "mnist": 100, "cifar10": 300}),
    "resnet": TrainPreset(lr=0.1, momentum=0.9, nesterov=True, l2=2e-4, batch_size=100, schedule="step",
                          gamma=_SQRT_TENTH, step_epochs=50, epochs={"digits": 30, "mnist": 100, "cifar10": 300}),
    "densenet": TrainPreset(lr=0.1, momentum=0.9, nesterov=True, l2=2e-4, batch_size=100, schedule="step",
                            gamma=_SQRT_TENTH, step_epochs=50,
                            epochs={"digits": 30, "mnist": 100, "cifar10": 300}),
    "taylornet": TrainPreset(lr=0.03, momentum=0.9, nesterov=True, l2=1e-4, batch_size=100, schedule="cosine",
                             clip_grad_norm=1.0, epochs={"digits": 20, "mnist": 60, "cifar10": 150}),
}
