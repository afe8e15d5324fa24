"""Benchmarks of the execution backend against its targets (issue "Proof", part 1).

Run ``.venv/bin/python -m bench.run [--quick] [--only NAME ...]``; see bench/README.md.
"""
