"""Triton kernels (imported lazily by the ops: triton is optional)."""
