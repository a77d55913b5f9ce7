"""ETA: Evaluating Then Aligning safety of vision-language models at inference time (ICLR 2025)."""

__version__ = "0.1.0"
