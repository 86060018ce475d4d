"""emf (see DESIGN.md)."""
