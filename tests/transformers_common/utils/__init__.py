"""Stand-in for a transformers test module missing from its source distribution."""
