"""bleprov benchmarks: `python -m benchmarks` runs them and prints a Markdown report."""
