"""The version of daskhpo (read by setuptools and by the history's attrs)."""

__version__ = "0.2.0"
