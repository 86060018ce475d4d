"""diffusion (see DESIGN.md)."""
