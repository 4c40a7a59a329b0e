"""ruripy: run Linux distros in rootless containers, in the spirit of ruri."""

__version__ = "0.1.0"
