"""licodec: a learned image codec and research toolkit."""

__version__ = "0.3.0"
