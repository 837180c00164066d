"""Benchmarks: each drives a real server and prints its figures, its target and the machine."""
