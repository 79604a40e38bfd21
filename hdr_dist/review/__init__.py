"""The review queue of a score output and the page a person works through."""
