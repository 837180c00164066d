"""Visits: immutable observations made at a household's door."""
