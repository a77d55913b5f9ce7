"""Analyses behind the notebooks: one module per notebook topic, each a few library calls."""
