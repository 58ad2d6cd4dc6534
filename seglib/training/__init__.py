"""Training a run: the loop (engine), its parts, its progress and its runtime."""
