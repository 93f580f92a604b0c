"""The serving benchmark (`python bench/bench.py`) and the real photographs it and the tests use."""
