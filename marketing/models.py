"""Marketing lists and their members (CONTRACT.md §7)."""
