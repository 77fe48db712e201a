"""Physics systems of the source papers: NN-QFT ensembles, 2D Ising Monte Carlo and RG, the RBM energy model."""
