"""Conflicts: disagreements about a household's field that a supervisor must look at."""
