"""coupling (see DESIGN.md)."""
