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
