"""What is measured, not asserted: benchmark scripts and the step harness (``python -m benchmarks.harness``).

Not part of the installed package; run from a source checkout.
"""
