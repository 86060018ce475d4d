"""Equinox bijectors, flows and the NumPyro bridge."""
