"""Single source of the package version (also part of every JIT cache key)."""
__version__ = "0.1.0"
