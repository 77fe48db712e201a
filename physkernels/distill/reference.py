"""Classification by distilled references (Sec. IV): embed with a trained classifier, pick the closest angle.

A test image ``x`` gets the class of the reference with the largest cosine similarity between embeddings,
``argmax_c max_{r in refs of c} cos(g(x), g(r))``; with one reference per class (D_L) this is the class whose
reference is closest in angle. ``g`` is the pooled feature map of a ResNet trained for ordinary classification.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@torch.no_grad()
def embed_all(embed, images: torch.Tensor, batch_size: int = 256, device="cpu") -> torch.Tensor:
    """``embed(images)`` in batches on ``device``, returned on the CPU."""
    return torch.cat([embed(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


def classify_by_references(test_features: torch.Tensor, ref_features: torch.Tensor, ref_labels: torch.Tensor,
                           num_classes: int) -> torch.Tensor:
    """Predicted class ``(N,)`` of each test embedding ``(N, D)`` from reference embeddings ``(R, D)``.

    Every class must have at least one reference (``ValueError`` otherwise).
    """
    if test_features.ndim != 2 or ref_features.ndim != 2 or test_features.shape[1] != ref_features.shape[1]:
        raise ValueError(f"test_features (N, D) and ref_features (R, D) must share D, got "
                         f"{tuple(test_features.shape)} and {tuple(ref_features.shape)}")
    missing = sorted(set(range(num_classes)) - set(ref_labels.tolist()))
    if missing:
        raise ValueError(f"ref_labels has no reference for classes {missing}")
    sim = F.normalize(test_features, dim=1) @ F.normalize(ref_features, dim=1).T  # (N, R)
    best = sim.new_full((sim.shape[0], num_classes), -2.0)
    best = best.scatter_reduce(1, ref_labels.expand(sim.shape[0], -1), sim, "amax")
    return best.argmax(1)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Translate every image by up to ``pad`` pixels (zero padding, random crop), the usual small-image augment."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(images.device)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, C)
    # copy into fresh NCHW strides: with C = 1 the permuted view counts as contiguous but has odd strides,
    # which crashed the CPU convolution backward (torch 2.13)
    return torch.empty_like(images).copy_(shifted.permute(0, 3, 1, 2))


def train_classifier(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int,
                     batch_size: int = 128, lr: float = 0.05, seed: int = 0, device="cpu",
                     progress: bool = True) -> list[float]:
    """SGD (momentum 0.9, weight decay 5e-4, one-cycle lr) with 2-pixel random shifts; returns the epoch losses."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = (len(images) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    losses = []
    for _ in tqdm(range(epochs), desc="classifier", disable=not progress):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for i in range(0, len(images), batch_size):
            idx = order[i:i + batch_size]
            x = random_shift(images[idx], 2, generator).to(device)
            loss = F.cross_entropy(model(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(images))
    model.eval()
    return losses
