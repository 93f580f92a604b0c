"""The serving benchmark (`python -m bench.bench`) and the real photographs it and the tests use."""
