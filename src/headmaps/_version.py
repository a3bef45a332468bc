"""The package version, in one place (read by ``__init__``, the caches, the CLI and the build)."""

__version__ = "0.1.0"
