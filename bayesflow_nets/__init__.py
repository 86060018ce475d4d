"""bayesflow_nets: embedded-model flows, AEFs, improper GPs, hybrid VI and diffusion-score primitives."""

__version__ = "0.1.0"
