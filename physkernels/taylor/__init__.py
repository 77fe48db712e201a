"""Direct Taylor expansion (TaylorNet paper, Eq. 2-3): monomial bookkeeping and the Fig. 3 / Fig. 13 analyses.

* :func:`monomials` / :func:`monomial_count`: the Taylor terms x_{i1} ... x_{id}, d = 1..order, i1 <= ... <= id,
  ordered by degree, then as ``itertools.combinations_with_replacement(range(n), d)`` yields them.
* :func:`row_table`: the same terms grouped into *rows* (a lower-degree prefix monomial times a run of x's), the
  structure every fused kernel walks.
* :func:`quadratic_weights_by_distance`: the quadratic-weight statistics of Fig. 3 and the per-class maps of Fig. 13.
"""

from .monomials import INDEX_LIMIT, check_order, monomial_count, monomials, row_table, term_rows
from .analysis import QuadraticWeightStats, quadratic_weights_by_distance

__all__ = [
    "INDEX_LIMIT",
    "QuadraticWeightStats",
    "check_order",
    "monomial_count",
    "monomials",
    "quadratic_weights_by_distance",
    "row_table",
    "term_rows",
]
