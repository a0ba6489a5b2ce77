"""batchconv's version, written here only: ``batchconv.__version__``, ``batchconv
--version`` and the package metadata (``pyproject.toml`` reads it) all come from it."""

__version__ = "0.1.0"
