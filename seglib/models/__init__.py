"""The networks: one registry of models, their builders and their weights."""
