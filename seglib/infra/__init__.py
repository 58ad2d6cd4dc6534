"""Infrastructure below every layer: errors, paths, atomic files, locks, signals, devices, small array helpers."""
