"""Fit loops, checkpoints and inference workflow."""
