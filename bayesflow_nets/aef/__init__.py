"""aef (see DESIGN.md)."""
