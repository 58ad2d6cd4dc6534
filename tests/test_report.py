"""`seglib report`: parameter validation, the batch (tiny notebooks), failure handling, HTML, index and CLI."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re

import nbformat
import pytest
from conftest import one_fast
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from seglib import report
from seglib.cli import report as report_cli
from seglib.infra.errors import ConfigError, SeglibError

PARAMS_SRC = ('profile: str = "default"  # smoke | cpu | gpu | auto; "default" means $SEGLIB_PROFILE, else auto\n'
              'run: str = "default"  # run name; "default" means the profile name\n'
              'n_points: int = 5  # points plotted\n'
              'scale: float = 1.0  # y scale\n'
              'label: str = "curve"  # legend label\n')
FIGURE_SRC = ("import matplotlib.pyplot as plt\n"
              "fig, ax = plt.subplots(figsize=(2, 2), dpi=50)\n"
              "ax.plot(range(n_points), [scale * i for i in range(n_points)], label=label)\n"
              "print('UNIQUE_SOURCE_MARKER' .lower(), profile, run)")


def _write(path, cells, tagged=0):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "seglib", "display_name": "Python (seglib)", "language": "python"}
    if tagged is not None:
        nb.cells[tagged].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(path))
    return path


def _good(folder, name="01_a.ipynb"):
    return _write(folder / name, [new_code_cell(PARAMS_SRC), new_markdown_cell("# Tiny figure"),
                                  new_code_cell(FIGURE_SRC)])


def _failing(folder, name="02_b.ipynb"):
    return _write(folder / name, [new_code_cell('run: str = "default"  # run name\nflag: bool = False  # a flag'),
                                  new_code_cell("x = 1"),
                                  new_code_cell("raise ValueError('boom')"),
                                  new_code_cell("print('never')")])


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    for name in ("seglib", "python3"):
        if name in specs:
            return name
    pytest.skip("no Python Jupyter kernel installed")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Runs and reports in tmp folders; returns (notebooks folder, reports folder)."""
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("SEGLIB_RUN", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as conftest sets it: the runner must still get inline figures
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    return nbs, tmp_path / "reports"


def _cli(argv):
    parser = argparse.ArgumentParser(prog="seglib")
    sub = parser.add_subparsers(dest="command", required=True)
    report_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------------- parameters


def test_parameters_are_read_as_papermill_reads_them(tmp_path):
    params = report.notebook_parameters(_good(tmp_path))
    assert list(params) == ["profile", "run", "n_points", "scale", "label"]
    assert params["profile"].type_name == "str" and params["profile"].default == "default"
    assert params["n_points"].type_name == "int" and params["n_points"].help == "points plotted"
    assert params["n_points"].default == 5 and params["scale"].default == 1.0


def test_a_parameter_line_papermill_cannot_read_is_an_error(tmp_path):
    """papermill skips `name = value  # a = b` lines, so `-p name` would be silently ignored: refuse it."""
    bad = _write(tmp_path / "01_bad.ipynb", [new_code_cell('n: int = 3  # n = how many\nk: int = 1  # k'),
                                             new_code_cell("print(n, k)")])
    with pytest.raises(SeglibError, match=r"01_bad.ipynb: papermill cannot read the parameter line of n"):
        report.notebook_parameters(bad)


@pytest.mark.parametrize(("raw", "kind", "expected"), [
    ("3", "int", 3), ("0.5", "float", 0.5), ("2", "float", 2.0), ("1e-3", "float", 1e-3), ("true", "bool", True),
    ("yes", "str", "yes"), ("12", "str", "12"), ("{epochs: 5}", "dict", {"epochs": 5}), ("[1, 2]", "list", [1, 2]),
])
def test_coerce_param_accepts_matching_values(raw, kind, expected):
    value = report.coerce_param("x", raw, kind)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("raw", "kind"), [("abc", "int"), ("1.5", "int"), ("true", "int"), ("maybe", "bool"),
                                           ("5", "dict"), ("x", "float"), ("", "int")])
def test_coerce_param_rejects_mismatched_values(raw, kind):
    with pytest.raises(ConfigError, match=f"expected {kind}"):
        report.coerce_param("x", raw, kind)


def test_parse_param_args():
    assert report.parse_param_args(["a=1", "b = {x: 1}", "c="]) == {"a": "1", "b": "{x: 1}", "c": ""}
    with pytest.raises(ConfigError, match="key=value"):
        report.parse_param_args(["novalue"])


def test_overrides_are_validated_against_the_training_settings(tmp_path):
    declared = {"03.ipynb": {"overrides": report.NotebookParam("overrides", "dict", {})}}
    args = report.notebook_arguments(declared, {}, {"overrides": "{epochs: 2}"}, "smoke")
    assert args["03.ipynb"] == {"overrides": {"epochs": 2}}
    with pytest.raises(ConfigError, match="unknown setting 'epochz'"):
        report.notebook_arguments(declared, {}, {"overrides": "{epochz: 2}"}, "smoke")


def test_each_notebook_gets_only_what_it_declares(tmp_path):
    declared = {"01.ipynb": {"data_dir": report.NotebookParam("data_dir", "str")},
                "02.ipynb": {"profile": report.NotebookParam("profile", "str"),
                             "seed": report.NotebookParam("seed", "int")}}
    args = report.notebook_arguments(declared, {"profile": "smoke", "run": "r", "data_dir": None},
                                     {"seed": "3"}, "smoke")
    assert args == {"01.ipynb": {}, "02.ipynb": {"profile": "smoke", "seed": 3}}
    with pytest.raises(ConfigError, match="--profile"):
        report.notebook_arguments(declared, {}, {"profile": "cpu"}, "smoke")


def test_unknown_param_is_an_error_before_anything_runs(env, kernel):
    nbs, reports = env
    _good(nbs)
    with pytest.raises(ConfigError, match=r"no notebook has a parameter 'n_pointz'; valid names: label, n_points, "):
        report.run_report("smoke", "r1", params={"n_pointz": "3"}, notebooks_dir=nbs, kernel=kernel)
    assert not reports.exists()


def test_bad_value_type_is_an_error_before_anything_runs(env, kernel):
    nbs, reports = env
    _good(nbs)
    with pytest.raises(ConfigError, match=r"-p n_points=many: expected int \(a whole number\), got text \(declared in 01_a.ipynb\)"):
        report.run_report("smoke", "r1", params={"n_points": "many"}, notebooks_dir=nbs, kernel=kernel)
    assert not reports.exists()


def test_unknown_profile_and_missing_kernel_are_errors_before_anything_runs(env, kernel):
    nbs, reports = env
    _good(nbs)
    with pytest.raises(ConfigError, match="profile 'fast' unknown"):
        report.run_report("fast", "r1", notebooks_dir=nbs, kernel=kernel)
    with pytest.raises(SeglibError, match=r"Jupyter kernel 'no-such-kernel' not found; run `make setup`"):
        report.run_report("smoke", "r1", notebooks_dir=nbs, kernel="no-such-kernel")
    with pytest.raises(SeglibError, match="no numbered notebooks"):
        report.run_report("smoke", "r1", notebooks_dir=nbs / "empty", kernel=kernel)
    assert not reports.exists()


def test_reuse_of_a_trained_run_is_stated(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "train_summary.json").write_text(json.dumps({"best_val_iou": 0.8123, "profile": "cpu"}))
    declared = {"03_train.ipynb": {"retrain": report.NotebookParam("retrain", "bool", False)}}
    notes = report.reuse_notes(run_dir, declared, {"03_train.ipynb": {}})
    assert len(notes) == 1
    assert "reusing the trained run" in notes[0] and "best val IoU 0.8123" in notes[0]
    assert "03_train.ipynb will not retrain" in notes[0] and "-p retrain=true" in notes[0]
    notes = report.reuse_notes(run_dir, declared, {"03_train.ipynb": {"retrain": True}})
    assert notes == [f"retrain=true: 03_train.ipynb will train {run_dir} again, replacing it once the new run "
                     "has saved its first epoch"]
    assert report.reuse_notes(tmp_path / "runs" / "new", declared, {"03_train.ipynb": {}}) == []


# ------------------------------------------------------------------------------------------- the batch


def test_report_success_refusal_and_overwrite_with_code(env, kernel, caplog):
    nbs, reports = env
    _good(nbs)
    _good(nbs, "02_c.ipynb")
    runs = reports.parent / "runs" / "r1"
    (runs / "eval" / "test").mkdir(parents=True)
    (runs / "eval" / "test" / "metrics.json").write_text(json.dumps({
        "n_images": 44, "threshold": 0.45, "mean_iou": 0.81, "mean_iou_ci95": [0.78, 0.84], "median_iou": 0.85,
        "pooled_iou": 0.83, "mean_dice": 0.88, "mean_boundary_iou": 0.41,
        "baselines": {"all-background": {"mean_iou": 0.0, "median_iou": 0.0, "pooled_iou": 0.0, "mean_dice": 0.0,
                                         "mean_boundary_iou": 0.0, "mean_iou_ci95": [0.0, 0.0]}}}))

    # 1. first run: hidden code, embedded figures, index, summary
    caplog.set_level(logging.INFO, logger="seglib")
    index = report.run_report("smoke", "r1", params={"n_points": "7"}, notebooks_dir=nbs, kernel=kernel)
    out = "\n".join(caplog.messages)
    assert index == reports / "r1" / "index.html"
    assert re.search(r"\[1/2\] 01_a\.ipynb \.\.\. \d+\.\d s", out) and "[2/2] 02_c.ipynb ..." in out
    folder = reports / "r1"
    assert sorted(p.name for p in folder.iterdir()) == ["01_a.html", "01_a.ipynb", "02_c.html", "02_c.ipynb",
                                                        "index.html", "summary.json"]
    page = (folder / "01_a.html").read_text()
    assert "data:image/png;base64," in page
    assert "unique_source_marker smoke r1" in page  # the output is there ...
    assert "UNIQUE_SOURCE_MARKER" not in page  # ... the code is not
    executed = nbformat.read(str(folder / "01_a.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n_points = 7" in injected[0].source and 'profile = "smoke"' in injected[0].source
    html = index.read_text()
    assert 'href="01_a.html"' in html and 'href="02_c.html"' in html
    assert "0.8100" in html and "all-background" in html and "Data and splits" in html
    assert "seglib report --profile smoke --run r1 -p n_points=7" in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["run"] == "r1" and summary["profile"] == "smoke"
    assert [nb["status"] for nb in summary["notebooks"]] == ["ok", "ok"]
    assert summary["headline"]["test"]["mean_iou"] == 0.81

    # 2. the same run name again without --overwrite: refused before anything runs
    with pytest.raises(SeglibError, match=r"already exists; pass --overwrite .* or choose another --run"):
        report.run_report("smoke", "r1", notebooks_dir=nbs, kernel=kernel)
    assert (folder / "index.html").read_text() == html

    # 3. --overwrite --with-code: stated plainly, code kept
    caplog.clear()
    report.run_report("smoke", "r1", with_code=True, overwrite=True, notebooks_dir=nbs, kernel=kernel)
    out = "\n".join(caplog.messages)
    assert "replacing the previous report at" in out
    assert "UNIQUE_SOURCE_MARKER" in (folder / "01_a.html").read_text()
    assert not (reports / ".r1.partial").exists() and not (reports / ".r1.old").exists()


def test_failing_notebook_stops_the_batch_and_keeps_the_partial_copy(env, kernel):
    nbs, reports = env
    _good(nbs)
    _failing(nbs)
    _good(nbs, "03_c.ipynb")
    previous = reports / "r2"
    previous.mkdir(parents=True)
    (previous / "index.html").write_text("the previous good report")

    with pytest.raises(SeglibError) as info:
        report.run_report("smoke", "r2", overwrite=True, notebooks_dir=nbs, kernel=kernel)
    message = str(info.value)
    failed = reports / "r2.failed"
    assert re.match(r"notebook 02_b\.ipynb failed at cell In \[\d+\], which starts \"raise ValueError\('boom'\)\" "
                    r"\(ValueError: boom\); partial notebook kept at ", message), message
    assert "ValueError: boom" in message and f"partial notebook kept at {failed / '02_b.ipynb'}" in message
    assert (previous / "index.html").read_text() == "the previous good report"
    assert sorted(p.name for p in failed.iterdir()) == ["01_a.html", "01_a.ipynb", "02_b.html", "02_b.ipynb",
                                                        "summary.json"]
    partial = nbformat.read(str(failed / "02_b.ipynb"), as_version=4)
    errors = [o for c in partial.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["evalue"] == "boom"
    summary = json.loads((failed / "summary.json").read_text())
    assert [nb["status"] for nb in summary["notebooks"]] == ["ok", "failed", "not run"]
    assert not (reports / ".r2.partial").exists()


def test_cli_prints_the_index_path_last(env, kernel, capsys, monkeypatch):
    nbs, reports = env
    _good(nbs)
    monkeypatch.setattr(report.paths, "notebooks_dir", lambda: nbs)
    assert _cli(["report", "--profile", "smoke", "--run", "c1", "--kernel", kernel, "-p", "label=x"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(reports / "c1" / "index.html")
    with pytest.raises(ConfigError, match="expected int"):
        _cli(["report", "--profile", "smoke", "--run", "c2", "--kernel", kernel, "-p", "n_points=x"])


# ------------------------------------------------------------------------------------------- the real notebooks


@pytest.mark.slow  # all seven notebooks once more (make test runs them on the built-in set): make test-slow
def test_real_notebooks_smoke_report_on_a_registered_set_of_ones_own(tmp_path, monkeypatch, capsys):
    """`make test` runs the seven notebooks on the built-in set (nbval); this renders the whole study for a set
    registered with `seglib data add`, as `seglib report --profile smoke -p dataset=NAME` does."""
    from conftest import photo_folders

    from seglib.cli import main

    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    monkeypatch.delenv("SEGLIB_RUN", raising=False)
    images, masks = photo_folders(tmp_path / "mine", n=24)
    assert main(["data", "add", "mine", "--images", str(images), "--masks", str(masks)]) == 0
    assert main(["data", "split", "mine"]) == 0
    from jupyter_client.kernelspec import KernelSpecManager

    kernel = "seglib" if "seglib" in KernelSpecManager().find_kernel_specs() else "python3"
    index = report.run_report("smoke", "smoke-report", params={"dataset": "mine", "external": ""}, kernel=kernel)
    folder = index.parent
    notebooks = report.find_notebooks()
    assert [nb.name[:2] for nb in notebooks] == ["01", "02", "03", "04", "05", "06", "07"]
    html = index.read_text()
    for nb in notebooks:
        page = folder / f"{nb.stem}.html"
        assert page.is_file() and (folder / nb.name).is_file()
        assert "data:image/png;base64," in page.read_text(), f"{page.name} has no embedded figure"
        assert f'href="{nb.stem}.html"' in html
    summary = json.loads((folder / "summary.json").read_text())
    assert all(nb["status"] == "ok" for nb in summary["notebooks"])
    assert "data set mine (folders, mask rule binary)" in (folder / "01_data_exploration.html").read_text()
    metrics = json.loads((tmp_path / "runs" / "smoke-report" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["datasets"] == ["mine"] and metrics["trained_on"] == ["mine"]


def test_render_html_drops_progress_widgets_but_keeps_text_and_figures(tmp_path):
    import base64

    from nbformat.v4 import new_output

    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    cell = new_code_cell("train()", outputs=[
        new_output("display_data", data={report.WIDGET_MIME: {"model_id": "abc", "version_major": 2,
                                                              "version_minor": 0},
                                         "text/plain": "  0%|          | 0/4"}),
        new_output("stream", name="stdout", text="epoch 1/2 val IoU 0.31\n"),
        new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
    ])
    nb = new_notebook(cells=[cell])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, str(tmp_path / "x.ipynb"))
    page = report.render_html(tmp_path / "x.ipynb", tmp_path / "x.html").read_text()
    assert "epoch 1/2 val IoU 0.31" in page and f"data:image/png;base64,{png}" in page
    assert "0/4" not in page and "widget-state" not in page and "unpkg" not in page
    assert 'class="jp-InputArea' not in page
    with_code = report.render_html(tmp_path / "x.ipynb", tmp_path / "y.html", with_code=True).read_text()
    assert 'class="jp-InputArea' in with_code


# case 13 of the new-user trial: values a notebook would refuse are refused before anything runs
@pytest.mark.parametrize(("param", "says"), [("splits=[train]", "not an evaluated split"),
                                             ("n_samples=-5", "must be 1 or more"),
                                             ("retrain=maybe", "expected bool")])
def test_out_of_range_params_fail_before_anything_runs(env, kernel, param, says):
    nbs, reports = env
    _write(nbs / "01_x.ipynb", [new_code_cell('n_samples: int = 3  # photos\nsplits: list = ["test"]  # splits\n'
                                              'retrain: bool = False  # again'), new_code_cell("print(1)")])
    with pytest.raises(ConfigError, match=re.escape(says)) as info:
        report.run_report("smoke", "r1", params=report.parse_param_args([param]), notebooks_dir=nbs, kernel=kernel)
    assert str(info.value).startswith(f"-p {param.split('=')[0]}=")
    assert not reports.exists()


@pytest.mark.parametrize("value", ["/nonexistent", "/nonexistent/pairs.csv", "/no/images:/no/masks"])
def test_an_external_set_that_cannot_be_read_fails_before_anything_runs(env, kernel, value):
    """`-p external=/nonexistent` stops the batch before notebook 03 trains, not at notebook 04 (#35)."""
    nbs, reports = env
    _write(nbs / "01_x.ipynb", [new_code_cell('external: str = ""  # set scored for generalisation'),
                                new_code_cell("print(1)")])
    with pytest.raises(ConfigError, match=r"^-p external=.*nonexistent|^-p external=.*/no/"):
        report.run_report("smoke", "r1", params=report.parse_param_args([f"external={value}"]), notebooks_dir=nbs,
                          kernel=kernel)
    assert not reports.exists()


# case 16: training progress reaches the terminal while a notebook runs
def test_progress_lines_stream_to_the_terminal_while_a_notebook_runs(env, kernel, caplog):
    nbs, _ = env
    _write(nbs / "01_train.ipynb", [
        new_code_cell('profile: str = "default"  # profile\nrun: str = "default"  # run name'),
        new_code_cell("import time\nprint('run r1: profile smoke, tiny')\nprint('not a progress line')\n"
                      "for e in (1, 2):\n    print(f'epoch {e:3d}/2  loss 0.5  val IoU 0.7')\n"
                      "    time.sleep(0.3)")])
    caplog.set_level(logging.INFO, logger="seglib")
    report.run_report("smoke", "r1", notebooks_dir=nbs, kernel=kernel)
    seen = [(record.created, record.getMessage()) for record in caplog.records]
    lines = [line.strip() for _, line in seen]
    assert "run r1: profile smoke, tiny" in lines
    assert "epoch   1/2  loss 0.5  val IoU 0.7" in lines and "epoch   2/2  loss 0.5  val IoU 0.7" in lines
    assert "not a progress line" not in lines
    # streamed as they came, before the notebook's own "done" line
    done = next(t for t, line in seen if line.startswith("[1/1] 01_train.ipynb ... ") and line.endswith(" s"))
    first_epoch = next(t for t, line in seen if line.strip().startswith("epoch   1/2"))
    assert first_epoch < done


# case 17: committed reports hold paths relative to the project
def test_report_paths_are_relative_to_the_project():
    from seglib.infra.paths import PROJECT_ROOT, display_path

    assert display_path(PROJECT_ROOT / "runs" / "reference" / "best.pt") == "runs/reference/best.pt"
    assert display_path(PROJECT_ROOT / "data" / "splits") == "data/splits"
    assert display_path("/elsewhere/x") == "/elsewhere/x"


def test_model_card_of_a_trained_run_and_its_section_in_the_index(tmp_path):
    """The card says what the model is, its weights, uses, data, scores with CIs and subgroups (#15)."""
    from seglib.image_facts import FACT_COLUMNS
    from seglib.report.model_card import model_card
    from seglib.runs import Run

    run = Run(tmp_path / "runs" / "r1")
    run.eval_dir("test").mkdir(parents=True)
    import yaml

    from seglib.profiles import make_config

    saved = make_config("cpu", {"input_size": 448}).to_dict()  # as seglib saved it before `geometry` existed
    del saved["geometry"]
    run.config_file.write_text(yaml.safe_dump(saved))
    run.summary_file.write_text(json.dumps({"parameters": 106401, "weights": "MediaPipe weights, fine-tuned",
                                            "epochs_run": 30, "best_epoch": 23, "train_seconds": 660,
                                            "device": "cpu", "stop_reason": "completed"}))
    metrics = {"n_images": 4, "threshold": 0.45, "mean_iou": 0.81, "mean_iou_ci95": [0.7, 0.9], "median_iou": 0.8,
               "pooled_iou": 0.83, "mean_dice": 0.88, "mean_boundary_iou": 0.41, "tta": True}
    run.metrics_file("test").write_text(json.dumps(metrics))
    per_image = {"id": ["1", "2", "3", "4"], "iou": [0.2, 0.9, 0.95, 0.9], "fg_fraction": [0.05, 0.3, 0.5, 0.3],
                 "height": [400] * 4, "width": [300] * 4, "aspect_ratio": [0.75] * 4, "mean_brightness": [0.5] * 4,
                 "figure_brightness": [0.5] * 4, "background_brightness": [0.5] * 4, "is_grayscale": [False] * 4,
                 "n_people": [1, 1, 2, 1]}
    assert set(FACT_COLUMNS) <= set(per_image)  # measured at evaluation: the card decodes no photo
    import pandas as pd

    pd.DataFrame(per_image).to_csv(run.eval_dir("test") / "per_image.csv", index=False)
    card = model_card(run, "seglib report --profile cpu --run r1")
    for section in ("## Model", "## Intended use", "## Data", "## Metrics", "## Metrics by subgroup (test)",
                    "## Limitations", "## How to reproduce"):
        assert section in card
    assert "Apache-2.0" in card and "106,401 parameters" in card and "neither repository states a licence" in card
    assert "input 448x448 px, letterboxed" in card  # saved before `geometry` existed: letterboxed
    run.config_file.write_text(run.config_file.read_text() + "geometry: resize\n")
    assert "input 448x448 px, stretched (as MediaPipe does)" in model_card(run)
    assert "| test | 4 | 0.810 (0.700–0.900) |" in card and "| val | — | not scored yet |" in card
    assert "small figures (< 10% of the picture) | 1 | 0.200 |" in card
    assert "scores lowest on small figures" in card
    page = report.index_html({"run": "r1", "profile": "cpu", "generated_at": "now", "seglib_version": "x",
                              "kernel": "k", "notebooks": []}, run.dir, card=card)
    assert '<a href="model_card.md">model_card.md</a>' in page and "<h3>Intended use</h3>" in page



def test_model_card_of_a_run_on_several_sets_scores_each_set_and_says_what_trained_it(tmp_path):
    """A pooled split of several sets gets one row per set; the limits name the sets, not '202 photos'."""
    import pandas as pd
    import yaml

    from seglib.profiles import make_config
    from seglib.report.model_card import model_card
    from seglib.runs import Run

    run = Run(tmp_path / "runs" / "r3")
    run.eval_dir("test").mkdir(parents=True)
    run.config_file.write_text(yaml.safe_dump(make_config("cpu", {"data": "human-seg,pennfudan"}).to_dict()))
    run.metrics_file("test").write_text(json.dumps({"n_images": 4, "threshold": 0.5, "mean_iou": 0.7,
                                                    "mean_iou_ci95": [0.5, 0.9], "median_iou": 0.7}))
    counts = {"dice": [0.9] * 4, "boundary_iou": [0.5] * 4, "precision": [0.9] * 4, "recall": [0.9] * 4,
              "tp": [90, 80, 50, 40], "fp": [5, 10, 25, 30], "fn": [5, 10, 25, 30]}
    pd.DataFrame({"id": ["human-seg/1", "human-seg/2", "pennfudan/a", "pennfudan/b"], "iou": [0.9, 0.8, 0.5, 0.6],
                  **counts}).to_csv(run.eval_dir("test") / "per_image.csv", index=False)
    card = model_card(run)
    assert "| test · human-seg | 2 | 0.850 (" in card and "| test · pennfudan | 2 | 0.550 (" in card
    assert "Trained on 2 sets' training splits (human-seg, pennfudan)" in card
    assert "202 training photos" not in card and "No external set was scored" not in card


# ------------------------------------------------------------------------------------------- issue 21


def test_report_profile_defaults_to_the_seglib_profile_variable(env, kernel, monkeypatch):
    """`seglib report --help` says the default is $SEGLIB_PROFILE (as in the notebooks): it is."""
    nbs, reports = env
    _good(nbs)
    monkeypatch.setattr(report.paths, "notebooks_dir", lambda: nbs)
    monkeypatch.setenv("SEGLIB_PROFILE", "cpu-scratch")  # not what auto resolves to on any machine
    assert _cli(["report", "--kernel", kernel]) == 0
    summary = json.loads((reports / "cpu-scratch" / "summary.json").read_text())
    assert summary["profile"] == "cpu-scratch" and summary["run"] == "cpu-scratch"
    monkeypatch.setenv("SEGLIB_PROFILE", "fast")
    with pytest.raises(ConfigError, match=r"\$SEGLIB_PROFILE='fast' is not a profile"):
        _cli(["report", "--kernel", kernel, "--run", "x"])


@pytest.mark.parametrize(("argv", "says"), [(["--run", ""], "an empty run name"),
                                            (["-p", "n_points=1", "-p", "n_points=2"], "-p n_points: given twice"),
                                            (["-p", "n_points="], r"-p n_points=: empty; expected int"),
                                            (["-p", "n_points=1e400"], r"-p n_points=1e400: expected int")])
def test_an_empty_run_a_repeated_or_empty_parameter_is_one_line(env, kernel, monkeypatch, argv, says):
    nbs, reports = env
    _good(nbs)
    monkeypatch.setattr(report.paths, "notebooks_dir", lambda: nbs)
    with pytest.raises(ConfigError, match=says) as info:
        _cli(["report", "--profile", "smoke", "--kernel", kernel, *argv])
    assert "\n" not in str(info.value)
    assert not reports.exists()


def test_a_second_report_of_the_same_run_is_refused_while_one_is_written(env, kernel):
    from seglib.infra.locks import LockedError, exclusive

    nbs, reports = env
    _good(nbs)
    with exclusive(reports / "r1", "report reports/r1"):  # as a running `seglib report --run r1` holds it
        with pytest.raises(LockedError, match=rf"in use by pid {os.getpid()}"):
            report.run_report("smoke", "r1", notebooks_dir=nbs, kernel=kernel)
        assert sorted(p.name for p in reports.iterdir()) == [".r1.lock"]  # nothing staged
    report.run_report("smoke", "r1", notebooks_dir=nbs, kernel=kernel)
    assert sorted(p.name for p in reports.iterdir()) == ["r1"]  # and the lock is gone after


SLEEPER_SRC = ("import os, signal, time\n"
               "try:\n"
               "    os.kill(os.getppid(), getattr(signal, STOP))  # the user stops `seglib report` now\n"
               "    for _ in range(600):  # a cell that comes back to Python often, as a training loop does: a\n"
               "        time.sleep(0.1)  # signal the OS gives another thread of the kernel ends one short sleep\n"
               "except KeyboardInterrupt:  # what a training cell does on Ctrl-C: stop cleanly, keep its state\n"
               "    time.sleep(3)\n"
               "    open('stopped-cleanly.txt', 'w').close()\n"
               "    raise")


@pytest.mark.parametrize("stop", one_fast(["SIGINT", "SIGTERM", "SIGHUP"], "SIGTERM"))
def test_a_stopped_report_stops_cleanly_and_keeps_the_previous_report(env, kernel, capfd, stop, caplog):
    """Ctrl-C (or SIGTERM/SIGHUP, as the CLI handles them) while a notebook runs: the kernel is interrupted, not
    killed mid-cell; no kernel traceback reaches the terminal; the previous report is untouched; the attempt is
    kept as NAME.failed with whole notebooks only; no staging folder, temporary notebook or lock is left."""
    import signal

    from seglib.infra.signals import stop_on_signals

    nbs, reports = env
    _good(nbs)
    _write(nbs / "02_stop.ipynb", [new_code_cell(f'STOP: str = "{stop}"  # signal'), new_code_cell(SLEEPER_SRC)])
    previous = reports / "r1"
    previous.mkdir(parents=True)
    (previous / "index.html").write_text("the previous good report")
    caplog.set_level(logging.INFO, logger="seglib")
    with pytest.raises(KeyboardInterrupt) as info, stop_on_signals():
        report.run_report("smoke", "r1", overwrite=True, notebooks_dir=nbs, kernel=kernel)
    assert (info.value.args[0] if info.value.args else "SIGINT") == stop
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ZMQError" not in err, err
    assert caplog.messages[-1] == (f"{stop} during 02_stop.ipynb: the notebooks run so far are kept at {reports / 'r1.failed'}; "
                         f"the previous report at {previous} is unchanged")
    assert (previous / "index.html").read_text() == "the previous good report"
    assert sorted(p.name for p in reports.iterdir()) == ["r1", "r1.failed"]
    failed = reports / "r1.failed"
    assert sorted(p.name for p in failed.iterdir()) == ["01_a.html", "01_a.ipynb", "02_stop.ipynb", "summary.json"]
    nbformat.read(str(failed / "02_stop.ipynb"), as_version=4)  # a whole notebook
    assert (nbs / "stopped-cleanly.txt").is_file()  # the kernel was interrupted before it was shut down
    summary = json.loads((failed / "summary.json").read_text())
    assert [nb["status"] for nb in summary["notebooks"]] == ["ok", "interrupted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stop_while_the_report_is_renamed_into_place_waits_for_the_renames():
    import signal

    from seglib.report.kernel import stops_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with stops_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("first rename")
            done.append("second rename")
    assert done == ["first rename", "second rename"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
