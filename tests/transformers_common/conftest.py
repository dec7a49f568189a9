"""The copied files hold mixins, not tests of their own: pytest does not collect them here."""

collect_ignore_glob = ["*.py", "*/*.py"]
