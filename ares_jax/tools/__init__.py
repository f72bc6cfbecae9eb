"""Command-line tools beside the run (step report)."""
