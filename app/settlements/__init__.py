"""Settlements (admin level 4, KATOTTG P-codes) and who is assigned to them."""
