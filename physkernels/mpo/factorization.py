"""Index factorisations of an MPO (paper Eq. 3-4) and the bond dimensions worth keeping.

An MPO ``M_{I_1..I_n}^{J_1..J_n}(D)`` (Eq. 8) needs ``prod I = in_features`` and ``prod J = out_features``
(Eq. 4). :func:`factorize` picks the paper's kind of factorisation: balanced factors with the largest in the middle
(784 -> (4, 7, 7, 4), 4096 -> (4, 4, 8, 8, 4)). :func:`useful_ranks` clips requested bond dimensions to the largest
ranks an MPO of those shapes can actually use.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence


def check_positive_int(value, name: str) -> int:
    """``value`` as an int, or TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_shape(shape, name: str) -> tuple[int, ...]:
    """``shape`` as a non-empty tuple of positive ints, or TypeError/ValueError naming ``name``."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {type(shape).__name__} ({shape!r})")
    if len(shape) == 0:
        raise ValueError(f"{name} must not be empty")
    return tuple(check_positive_int(s, f"{name}[{k}]") for k, s in enumerate(shape))


def check_shapes(in_shape, out_shape, in_features: int | None = None, out_features: int | None = None):
    """Validate an MPO's index shapes (Eq. 4): equal lengths >= 2 and the right products when features are given."""
    in_shape, out_shape = check_shape(in_shape, "in_shape"), check_shape(out_shape, "out_shape")
    if len(in_shape) != len(out_shape):
        raise ValueError(f"in_shape and out_shape must have the same number of factors (one per core), "
                         f"got {in_shape} and {out_shape}")
    if len(in_shape) < 2:
        raise ValueError(f"an MPO needs at least 2 cores, got in_shape={in_shape} (use nn.Linear for one core)")
    for shape, features, name in ((in_shape, in_features, "in_shape"), (out_shape, out_features, "out_shape")):
        if features is not None and math.prod(shape) != features:
            raise ValueError(f"prod({name}) must equal {name.split('_')[0]}_features={features}, "
                             f"got prod{shape} = {math.prod(shape)}")
    return in_shape, out_shape


def _divisors(m: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(m) + 1) if m % d == 0]
    return sorted(set(small + [m // d for d in small]))


def _nondecreasing_factorizations(m: int, parts: int, smallest: int):
    """All tuples f_1 <= ... <= f_parts with product m and f_1 >= smallest."""
    if parts == 1:
        if m >= smallest:
            yield (m,)
        return
    for d in _divisors(m):
        if d < smallest:
            continue
        if d ** parts > m:
            break
        for rest in _nondecreasing_factorizations(m // d, parts - 1, d):
            yield (d,) + rest


def _balance_cost(factors: tuple[int, ...]) -> tuple[float, int]:
    """Spread of the factors: variance of their logarithms, then the largest factor (tie-break)."""
    logs = [math.log(f) for f in factors]
    mean = sum(logs) / len(logs)
    return round(sum((l - mean) ** 2 for l in logs), 12), max(factors)


def _largest_in_the_middle(ascending: tuple[int, ...]) -> tuple[int, ...]:
    """Place ascending factors from the outside in, alternating left and right: (4,4,4,8,8) -> (4,4,8,8,4)."""
    left, right = [], []
    for k, f in enumerate(ascending):
        (left if k % 2 == 0 else right).append(f)
    return tuple(left + right[::-1])


def factorize(n: int, parts: int, *, allow_ones: bool = True) -> tuple[int, ...]:
    """Split ``n`` into ``parts`` integer factors as evenly as possible, largest factors in the middle.

    Among all factorisations ``n = f_1 * ... * f_parts`` this returns the one whose ``log f_k`` have the smallest
    variance (ties: the smaller maximum), ordered from the outside in. Examples (the paper's shapes):
    ``factorize(784, 4) == (4, 7, 7, 4)``, ``factorize(256, 4) == (4, 4, 4, 4)``,
    ``factorize(4096, 5) == (4, 4, 8, 8, 4)``, ``factorize(10, 4) == (1, 2, 5, 1)``.

    With ``allow_ones=False`` every factor must be > 1; if ``n`` has fewer than ``parts`` prime factors (counted
    with multiplicity) that is impossible and a ValueError is raised.
    """
    n, parts = check_positive_int(n, "n"), check_positive_int(parts, "parts")
    candidates = list(_nondecreasing_factorizations(n, parts, 1 if allow_ones else 2))
    if not candidates:
        raise ValueError(f"cannot factorize n={n} into parts={parts} factors > 1 "
                         f"(n has fewer than {parts} prime factors); pass allow_ones=True or fewer parts")
    return _largest_in_the_middle(min(candidates, key=_balance_cost))


def max_ranks(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, ...]:
    """Largest useful bond dimensions: ``min(prod_{k<=b} I_k J_k, prod_{k>b} I_k J_k)`` for b = 1..n-1.

    These are the ranks of the dense weight's unfoldings, so with them an MPO represents any W exactly.
    """
    sizes = [i * j for i, j in zip(in_shape, out_shape)]
    return tuple(min(math.prod(sizes[:b]), math.prod(sizes[b:])) for b in range(1, len(sizes)))


def useful_ranks(in_shape: Sequence[int], out_shape: Sequence[int], bond_dim) -> tuple[int, ...]:
    """Clip requested bond dimensions to the largest ranks an MPO of these shapes can use.

    ``bond_dim`` is an int (the same D at every bond), a sequence of n-1 ints, a float in (0, 1] (that fraction of
    every bond's full rank :func:`max_ranks`, rounded, at least 1; like tensorly-torch's fractional ``rank``, but a
    fraction of the rank, not of the parameter count), or None (exact: :func:`max_ranks`).
    Bond b can carry at most ``D_{b-1} I_b J_b`` (what flows in from the left) and ``D_{b+1} I_{b+1} J_{b+1}``
    (from the right) independent directions, with ``D_0 = D_n = 1``; a left and a right sweep enforce both, which
    never changes the set of representable weights.
    """
    n = len(in_shape)
    if bond_dim is None:
        return max_ranks(in_shape, out_shape)
    if isinstance(bond_dim, numbers.Integral) and not isinstance(bond_dim, bool):
        ranks = [check_positive_int(bond_dim, "bond_dim")] * (n - 1)
    elif isinstance(bond_dim, numbers.Real) and not isinstance(bond_dim, bool):
        if not 0.0 < bond_dim <= 1.0:
            raise ValueError(f"a float bond_dim is a fraction of each bond's full rank and must lie in (0, 1], "
                             f"got {bond_dim}")
        ranks = [max(1, round(bond_dim * full)) for full in max_ranks(in_shape, out_shape)]
    elif isinstance(bond_dim, Sequence) and not isinstance(bond_dim, (str, bytes)):
        if len(bond_dim) != n - 1:
            raise ValueError(f"bond_dim must be an int or a list of n-1 = {n - 1} ints (one per bond), "
                             f"got {len(bond_dim)} values: {list(bond_dim)}")
        ranks = [check_positive_int(d, f"bond_dim[{b}]") for b, d in enumerate(bond_dim)]
    else:
        raise TypeError(f"bond_dim must be an int, a float in (0, 1], a sequence of ints or None, "
                        f"got {type(bond_dim).__name__}")
    sizes = [i * j for i, j in zip(in_shape, out_shape)]
    full = [1] + ranks + [1]
    for b in range(1, n):                      # left sweep: D_b <= D_{b-1} I_b J_b
        full[b] = min(full[b], full[b - 1] * sizes[b - 1])
    for b in range(n - 1, 0, -1):              # right sweep: D_b <= D_{b+1} I_{b+1} J_{b+1}
        full[b] = min(full[b], full[b + 1] * sizes[b])
    return tuple(full[1:-1])
