"""Markdown for the generated documentation: tables and numbers as the docs print them."""

from __future__ import annotations


def f3(x) -> str:
    return f"{float(x):.3f}"


def with_ci(mean, ci) -> str:
    """'0.911 (0.883–0.935)' from a mean and a [low, high] pair."""
    low, high = ci
    return f"{f3(mean)} ({f3(low)}–{f3(high)})"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def device_words(device: str) -> str:
    """A log row's device as the docs say it: 'one H100 ...', 'one GPU', '2 CPU cores'."""
    if device.startswith("cuda ("):
        return "one " + device[len("cuda ("):-1]
    return "one GPU" if device == "cuda" else "2 CPU cores" if device == "cpu" else device


def on_device(device: str) -> str:
    """' (2 CPU cores)' after a row's name; '' for a row with no device (a variant: no training of its own)."""
    return f" ({device_words(device)})" if device else ""
