"""Labelling: pre-labels for annotation tools, and which photos to label next."""
