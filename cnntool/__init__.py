"""cnntool: a command-line toolkit for image-classification CNNs."""

__version__ = "0.1.0"
