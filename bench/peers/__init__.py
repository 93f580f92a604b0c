"""The apps a user might pick instead of this one, on the same model, for bench/bench.py."""
