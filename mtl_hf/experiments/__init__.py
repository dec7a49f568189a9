"""Experiments on top of training: the comparison grid, the demo, benchmarks."""
