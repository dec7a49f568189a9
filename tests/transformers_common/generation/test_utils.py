"""Stand-in for transformers' ``tests/generation/test_utils.py``, which its source distribution lacks.

``ModelTesterMixin`` only checks ``issubclass(test_class, GenerationTesterMixin)`` to tell whether a
model's tests should include text generation; an image multi-task model has none, so an empty class
answers that check.
"""


class GenerationTesterMixin:
    """Marks a test class that runs ``generate`` tests; mtl-hf's test classes do not derive from it."""
