"""Data layer: fetch, catalogue, validation, splits and the PyTorch Dataset."""
