"""Exports for humanitarian partners: the formats they read, streamed."""
