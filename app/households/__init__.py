"""Households: the profile phones edit and the canonical state the fold derives."""
