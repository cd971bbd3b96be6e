"""Quantization family: weight formats on one scale (effective bits, error, fidelity) and packed kernels."""
