"""Accounts, devices, tokens and the role dependencies."""
