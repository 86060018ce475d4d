"""gp (see DESIGN.md)."""
