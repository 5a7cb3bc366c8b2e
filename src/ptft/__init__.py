"""ptft: a reproducible pipeline for studying how pre-training and fine-tuning relate in language models."""

__version__ = "0.1.0"
