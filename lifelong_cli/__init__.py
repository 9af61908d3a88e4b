"""llctl: operations for continuously trained models."""

__version__ = "0.1.0"
