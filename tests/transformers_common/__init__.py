"""transformers' common model and configuration tests, as shipped in its source distribution.

``test_modeling_common.py`` (``ModelTesterMixin``) and ``test_configuration_common.py``
(``ConfigTester``) are copied unchanged from the ``transformers-5.24.0.tar.gz`` source distribution on
PyPI (Apache License 2.0, see ``LICENSE``; their headers are kept). They are not part of the
transformers wheel, and CI has no network access to fetch them.

Three modules they import are not in that source distribution; ``exporters/``, ``generation/`` and
``utils/`` hold small stand-ins written for mtl-hf (see each module's docstring). To follow a new
transformers release, replace the two files with those of its source distribution
(``pip download --no-deps --no-binary :all: transformers==X.Y.Z``) and update ``VERSION``.

The tests themselves run in ``tests/test_transformers_conformance.py``.
"""

VERSION = "5.24.0"
"""The transformers release these files come from."""
