"""docs/results.md and the README's results table are generated from the committed results (`seglib docs`), the
README stays short, and every relative link in the documentation leads somewhere."""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from seglib.cli import docs as docs_cli
from seglib.infra import paths
from seglib.infra.errors import DataError
from seglib.studies.results_doc import REFRESH, TABLE_END, TABLE_START, expected_files, stale_files
from tests.conftest import run_subcommand

ROOT = paths.PROJECT_ROOT
SOURCES = ["reports/experiments.csv", "reports/cv", "reports/reference/metrics", "reports/reference-256/metrics",
           "reports/anchors", "reports/bench", "reports/generality", "reports/quality"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture
def project_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the committed results, README and docs (no checkpoints or HTML), taken as the project root."""
    for rel in SOURCES:
        src, dst = ROOT / rel, tmp_path / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shutil.copy2(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    return tmp_path


def test_committed_results_page_and_readme_table_are_what_seglib_docs_writes():
    for path, text in expected_files(ROOT).items():
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing: {REFRESH}"
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: {REFRESH}"


def test_readme_has_at_most_150_lines():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 150, f"README.md has {n} lines; move detail to docs/ (the README is read in five minutes)"


def test_every_relative_link_in_the_readme_and_docs_points_at_a_file_that_exists():
    broken = []
    for doc in doc_files():
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "links to nothing: " + ", ".join(broken)


def test_the_readme_results_table_is_between_its_markers_and_the_docs_name_every_page():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(TABLE_START) == 1 and readme.count(TABLE_END) == 1
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_a_changed_number_in_the_log_makes_both_files_stale_and_seglib_docs_rewrites_them(project_copy, capsys):
    log = project_copy / "reports" / "experiments.csv"
    with log.open(newline="") as f:
        rows = list(csv.DictReader(f))
    unet = next(r for r in rows if r["run"] == "mp-unet-448-final-cpu")
    assert (unet["test_mean_iou"], unet["test_mean_iou_ci95"]) == ("0.9016", "0.8758 - 0.9255")  # as committed
    unet["test_mean_iou"] = "0.8771"
    with log.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert stale_files() == [project_copy / "docs" / "results.md", project_copy / "README.md"]

    assert run_subcommand(docs_cli.add_parser, ["docs", "--check"]) == 1
    assert "README.md: stale; run `seglib docs` to refresh" in capsys.readouterr().out

    assert run_subcommand(docs_cli.add_parser, ["docs"]) == 0
    assert "canonical U-Net's test mean IoU 0.877" in (project_copy / "README.md").read_text()
    assert "0.8771 (0.8758–0.9255)" in (project_copy / "docs" / "results.md").read_text()
    assert stale_files() == []
    assert run_subcommand(docs_cli.add_parser, ["docs", "--check"]) == 0


def test_seglib_docs_leaves_the_readme_outside_its_markers_untouched(project_copy):
    readme = project_copy / "README.md"
    before, after = readme.read_text().split(TABLE_START)[0], readme.read_text().split(TABLE_END)[1]
    readme.write_text(before + TABLE_START + "\nan old table\n" + TABLE_END + after)
    assert run_subcommand(docs_cli.add_parser, ["docs"]) == 0
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(TABLE_END + after) and "an old table" not in text


def test_a_readme_without_the_table_markers_is_a_one_line_error(project_copy):
    readme = project_copy / "README.md"
    readme.write_text(readme.read_text().replace(TABLE_START, ""))
    with pytest.raises(DataError, match="no results-table markers") as info:
        expected_files()
    assert "\n" not in str(info.value)


def test_a_missing_source_file_is_named(project_copy):
    (project_copy / "reports" / "bench" / "bench.json").unlink()
    with pytest.raises(DataError, match=r"reports/bench/bench\.json: missing"):
        expected_files()


def test_docs_cli_names_every_command_and_option_of_seglib():
    from seglib.cli import build_parser

    cli_md = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    missing = []
    for name, sub in _subcommands(parser):
        if f"seglib {name}" not in cli_md:
            missing.append(f"seglib {name}")
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or "--help" in action.option_strings or not action.option_strings:
                continue  # internal options are not documented; positional arguments are named in the synopsis
            if not any(re.search(re.escape(option) + r"(?![\w-])", cli_md) for option in action.option_strings):
                missing.append(f"seglib {name} {action.option_strings[-1]}")
    assert not missing, "docs/cli.md does not mention: " + ", ".join(missing)


def _subcommands(parser, prefix=""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                nested = list(_subcommands(sub, full + " "))
                yield from nested or [(full, sub)]


def test_every_test_named_in_the_guarantees_exists():
    """docs/guarantees.md names tests; a renamed or deleted test would leave a guarantee with nothing behind it."""
    import re

    from seglib.infra.paths import PROJECT_ROOT

    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", (PROJECT_ROOT / "docs" / "guarantees.md").read_text()))
    defined = set()
    for path in (PROJECT_ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), flags=re.M))
        defined.add(path.stem)
    assert named and sorted(named - defined) == []


def test_the_readme_names_each_target_missed_with_the_score_reached():
    from types import SimpleNamespace

    from seglib.studies.results_doc import UNET_RUN, targets_line

    def sources(test_iou, unet_iou):
        return SimpleNamespace(
            reference={"test": {"mean_iou": test_iou, "mean_boundary_iou": 0.8}, "pennfudan": {"mean_iou": 0.82}},
            cv={"a": {"recipe": "a", "mean_iou": 0.91}, "b": {"recipe": "b", "mean_iou": 0.93}},
            run=lambda name: {"test_mean_iou": str(unet_iou)} if name == UNET_RUN else {},
            external="pennfudan", external_title="Penn-Fudan")

    line = targets_line(sources(0.911, 0.95))
    assert line.startswith("Targets not reached: best model's test mean IoU 0.911 (target 0.92). ")
    assert "fold mean" not in line and "U-Net" not in line
    assert targets_line(sources(0.93, 0.905)).startswith("Targets not reached: canonical U-Net's test mean IoU 0.905")
    assert targets_line(sources(0.93, 0.95)).startswith("Every target reached.")


def test_the_readme_says_how_long_the_main_job_took_where_a_timing_is_committed(tmp_path):
    from seglib.studies.bench.sections import MAIN_JOB_RECORD, main_job_time

    assert main_job_time(tmp_path) == ""
    record = tmp_path / MAIN_JOB_RECORD
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"seconds": 1500, "machine": "2 CPU cores", "sets": ["human-seg", "viton"],
                                  "date": "2026-12-07", "commit": "0123456789abcdef"}))
    text = main_job_time(tmp_path)
    assert "`make reports` took 25 min on 2 CPU cores" in text and "human-seg, viton" in text and "0123456" in text
    assert "it trained the weights" not in text  # said only where the record compared them
    record.write_text(json.dumps(json.loads(record.read_text()) | {"same_weights_as": "a.pt (max difference 0.0)"}))
    assert main_job_time(tmp_path).endswith("; it trained the weights of a.pt (max difference 0.0).")
    record.write_text("{}")
    assert main_job_time(tmp_path) == ""
