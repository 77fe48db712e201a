"""Shared checks: compare an op and all its gradients with its independent reference (tests and bench use them).

``check_against_reference(op, reference, args)`` runs ``op(*args)`` and ``reference(*args)`` on fresh copies of
the inputs, backpropagates the same random cotangent through both, and asserts that the outputs and the gradient
of every floating-point tensor argument agree. ``check_against_float64_reference`` judges a float32 op against the
reference evaluated in float64 with a normwise error bound.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch


def _tensor_leaves(args: Sequence[Any]) -> list[tuple[int, int | None, torch.Tensor]]:
    """(position, index-in-list or None, tensor) of every floating tensor argument, including inside lists."""
    leaves = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            leaves.append((i, None, a))
        elif isinstance(a, (list, tuple)):
            for j, t in enumerate(a):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    leaves.append((i, j, t))
    return leaves


def map_floating(args: Sequence[Any], fn: Callable[[torch.Tensor], torch.Tensor]) -> list[Any]:
    """``args`` with ``fn`` applied to every floating-point tensor, inside lists and tuples too (others unchanged)."""
    def apply(a):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            return fn(a)
        if isinstance(a, (list, tuple)):
            return type(a)(apply(t) for t in a)
        return a
    return [apply(a) for a in args]


def _fresh_copies(args: Sequence[Any]) -> tuple[list[Any], list[torch.Tensor]]:
    """Copies of ``args`` whose floating tensors are new leaves requiring grad (strides preserved)."""
    out = list(args)
    leaves = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            t = a.detach().clone().requires_grad_(True)
            out[i] = t
            leaves.append(t)
        elif isinstance(a, (list, tuple)):
            items = []
            for t in a:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    t = t.detach().clone().requires_grad_(True)
                    leaves.append(t)
                items.append(t)
            out[i] = type(a)(items) if isinstance(a, tuple) else items
    return out, leaves


def _outputs(result: Any) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def run_with_grads(fn: Callable, args: Sequence[Any], cotangent_seed: int = 1234):
    """Evaluate ``fn(*args)`` and the gradients of all floating tensor inputs for a seeded random cotangent."""
    copies, leaves = _fresh_copies(args)
    outs = _outputs(fn(*copies))
    gen = torch.Generator().manual_seed(cotangent_seed)  # drawn in float64: every dtype sees the same cotangent
    cotangents = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device, o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, leaves, cotangents, allow_unused=True)
    grads = [torch.zeros_like(l) if g is None else g for l, g in zip(leaves, grads)]
    return [o.detach() for o in outs], list(grads)


def check_against_reference(
    op: Callable,
    reference: Callable,
    args: Sequence[Any],
    *,
    atol: float = 1e-9,
    rtol: float = 1e-7,
    check_grads: bool = True,
    names: Sequence[str] | None = None,
) -> None:
    """Assert ``op`` matches ``reference`` in value and in the gradient of every floating tensor argument."""
    if check_grads:
        got_out, got_grads = run_with_grads(op, args)
        want_out, want_grads = run_with_grads(reference, args)
    else:
        with torch.no_grad():
            got_out, want_out = _outputs(op(*args)), _outputs(reference(*args))
        got_grads = want_grads = []
    assert len(got_out) == len(want_out), f"op returned {len(got_out)} outputs, reference {len(want_out)}"
    for k, (g, w) in enumerate(zip(got_out, want_out)):
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"output {k}: {m}")
    leaf_names = names or [f"arg{i}" + ("" if j is None else f"[{j}]") for i, j, _ in _tensor_leaves(args)]
    for name, g, w in zip(leaf_names, got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"gradient of {name}: {m}")


def check_against_float64_reference(
    op: Callable,
    reference: Callable,
    args: Sequence[Any],
    *,
    rel: float = 3e-5,
    names: Sequence[str] | None = None,
) -> None:
    """Assert a low-precision ``op`` matches exact math: ``reference`` on the same input values in float64.

    Every output and every gradient (same cotangent) must satisfy ``||got - want|| <= rel * ||want||`` (Frobenius),
    the normwise error bound of a float32 contraction, which unlike elementwise tolerances does not fail on
    entries that cancel to nearly zero or grow with the batch.
    """
    got_out, got_grads = run_with_grads(op, args)
    want_out, want_grads = run_with_grads(reference, map_floating(args, lambda t: t.detach().double()))
    leaf_names = names or [f"arg{i}" + ("" if j is None else f"[{j}]") for i, j, _ in _tensor_leaves(args)]
    pairs = [(f"output {k}", g, w) for k, (g, w) in enumerate(zip(got_out, want_out))]
    pairs += [(f"gradient of {n}", g, w) for n, g, w in zip(leaf_names, got_grads, want_grads)]
    for what, g, w in pairs:
        assert g.shape == w.shape, f"{what}: shape {tuple(g.shape)}, reference {tuple(w.shape)}"
        error, size = (g.double() - w).norm().item(), w.norm().item()
        assert error <= rel * size, f"{what}: normwise relative error {error / max(size, 1e-300):.3g} > {rel:g}"


def random_tensor(*shape: int, dtype=torch.float64, seed: int | None = None, device="cpu", scale: float = 1.0):
    """Standard-normal tensor (never zeros), optionally from a fixed seed."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return (torch.randn(*shape, generator=gen, dtype=dtype) * scale).to(device)
