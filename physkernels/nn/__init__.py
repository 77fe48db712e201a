"""Drop-in layers built on physkernels.ops."""
