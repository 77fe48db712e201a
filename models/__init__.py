"""Model definitions and experiment drivers built on the public physkernels API."""
