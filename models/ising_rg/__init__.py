"""Decimation RG versus autoencoders on the 2D Ising model (Shukla & Thakur, arXiv:2108.06157), end to end.

Stages (each a subcommand; ``all`` runs them in order, later stages reuse what earlier ones saved in ``--out``):

* ``data``: Monte Carlo lattices (``physkernels.physics.ising.sample``): the ``beta = 0.4352`` set with its two
  successive decimations, the wide-range set (beta uniform in [0.01, 0.6), drawn on ``--wide-betas`` random
  temperatures) and a test grid of 20 beta in [0.025, 0.5] (entropy, regressor accuracy, flow).
* ``shallow``: trains CG-n-n/2, CG-n/2-n/4, UP-n/4-n/2, UP-n/2-n on (lattice, decimated lattice) pairs.
* ``models``: Models 1, 2, 3 (and the hard-coded Model 3-H) wired as in Table I; losses (Fig. 9 / A.1),
  reconstructions (Fig. 10), weight matrices and spin correlations W W^T (Fig. 11-12).
* ``widerange``: AE-WR (Model 1 on the wide-range set, Fig. A.2) and the beta regressors (Fig. 15): several seeds
  for ``L x L`` lattices and, trained on an ``L/2`` wide-range set, for decimated lattices.
* ``entropy``: local 3x3 Shannon entropy vs beta of input, AE-WR output and decimated lattice (Fig. 13-14).
* ``flow``: beta predicted for AE-WR outputs vs beta, its line-fit crossing with beta' = beta (paper: 0.4527) with
  a bootstrap + seed error, beta' measured on lattices decimated twice, next to the decimation flow
  beta' = 3/8 ln cosh 4 beta (fixed point 0.507; paper: 0.505) (Fig. 16); the AE-WR outputs are read both as
  +-1 spins and raw, over ``--ae-seeds`` AE-WRs, and the decimated
  lattices also without a regressor (exact nearest-neighbour correlation matching). ``--results-dir`` writes
  stamped tables.
* ``rbm``: the Bernoulli RBM on L = 4 Ising data vs exact enumeration (see ``models/ising_rbm.py``).

``--quick`` runs everything on 8x8 lattices and a few hundred samples in well under a minute. The default is
32x32 with smaller data sets and far fewer epochs than the paper (4000): see docs/ising-rg.md.

Modules: ``common`` (settings, helpers), ``data``, ``autoencoders`` (shallow, models), ``regression`` (widerange),
``entropy``, ``flow`` and ``cli`` (the command line and the stamped result tables).
"""

from .cli import STAGES, main, run_all, write_bench_results
from .common import QUICK, Settings

__all__ = ["QUICK", "STAGES", "Settings", "main", "run_all", "write_bench_results"]
