"""Supervisors' work: review visits, resolve conflicts, merge duplicate households."""
