"""Experiments on top of training that users run: the comparison grid and the demo."""
