"""Benchmarks: `python -m bench.<name>` runs one and prints a Markdown table."""
