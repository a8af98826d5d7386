"""advcore: pure PyTorch science for advlab (no web, queue or database imports)."""

__version__ = "0.1.0"
