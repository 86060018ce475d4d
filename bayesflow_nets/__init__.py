"""bayesflow_nets: embedded-model flows, AEFs, improper GPs, hybrid VI and diffusion-score primitives.

The top level re-exports the most used entry points; everything else lives in the subpackages
(``bijectors``, ``diffusion``, ``emf``, ``gp``, ``coupling``, ``infer``).
"""

from .emf import AutoASVI as AutoASVI, AutoEMF as AutoEMF, fit_vi as fit_vi

__version__ = "0.1.0"
