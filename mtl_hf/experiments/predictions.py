"""Reading a run's ``test_predictions.csv`` back (the reader is :mod:`mtl_hf.run_folder`'s): the test
scores the low-data study and the pooling of cross-validation folds work from."""

from __future__ import annotations

from ..run_folder import read_test_predictions as read_predictions

__all__ = ["read_predictions"]
