"""The report's landing page (index.html): links, headline metrics, training facts, config, splits, timings."""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mistune
import yaml

import seglib
from seglib.evaluate import headline_from_metrics
from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.runs import Run, read_json

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:64rem;
padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}th{background:#f4f4f4}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tr.model td{font-weight:600}
.note{background:#fff8e1;border-left:3px solid #f0b400;padding:.4rem .8rem;margin:.4rem 0}
.big{font-size:1.6rem;font-weight:600}.muted{color:#777}code{background:#f4f4f4;padding:0 .2rem}
"""


def index_html(summary: Mapping[str, Any], run_dir: Path, reports_root: Path | None = None,
               card: str | None = None) -> str:
    """The report's landing page: self-contained HTML (inline CSS, no scripts, no external assets); `card`, the
    run's model card (Markdown, written beside it as model_card.md), is shown as a section."""
    e = html.escape
    run, profile = summary["run"], summary["profile"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Segmentation report — {e(run)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Human figure segmentation — run <code>{e(run)}</code></h1>",
        f'<p class="meta">profile <b>{e(profile)}</b> · generated {e(summary["generated_at"])} · '
        f'seglib {e(summary["seglib_version"])} · kernel {e(summary["kernel"])} · '
        f'total {_num(summary.get("seconds_total"), 1)} s</p>',
    ]
    parts += [f'<p class="note">{e(note)}</p>' for note in summary.get("reused", [])]

    parts += _notebooks_section(summary)

    run = Run(run_dir)
    test, val = run.metrics("test"), run.metrics("val")
    parts.append("<h2>Headline metrics (test)</h2>")
    if test:
        parts.append(_headline_block(test))
    else:
        parts.append(f'<p class="muted">No test evaluation found ({e(display_path(run.eval_dir("test")))}).</p>')
    if val:
        parts += ["<h2>Validation metrics</h2>", _headline_block(val)]
    external = sorted(p.name for p in run.eval_root.iterdir() if p.is_dir() and p.name not in ("val", "test")) \
        if run.eval_root.is_dir() else []
    for name in external:
        metrics = run.metrics(name)
        if metrics and metrics.get("external_set"):
            source = metrics["external_set"].get("source", "")
            parts += [f'<h2>External test set: {e(name)} <span class="muted">({e(source)}; never used for '
                      f'training or choosing)</span></h2>', _headline_block(metrics)]

    train = run.summary()
    if train:
        minutes = train.get("train_seconds", 0) / 60 if isinstance(train.get("train_seconds"), (int, float)) else None
        facts = {"initial weights": train.get("weights"), "epochs run": train.get("epochs_run"),
                 "best epoch": train.get("best_epoch"), "best val IoU": _num(train.get("best_val_iou"), 4),
                 "training time (min)": _num(minutes, 1), "images/s": _num(train.get("images_per_second"), 1),
                 "device": train.get("device"), "stop reason": train.get("stop_reason"),
                 "parameters": train.get("parameters")}
        parts += ["<h2>Training</h2>", _kv_table(facts)]
    cfg_file = run.config_file
    if cfg_file.is_file():
        try:
            cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            cfg = {}
        if isinstance(cfg, dict) and cfg:
            parts += [f"<h2>Run configuration <span class=\"muted\">({e(display_path(cfg_file))})</span></h2>",
                      _kv_table(cfg)]

    if card:
        text = card.split("\n", 1)[1] if card.startswith("# ") else card  # the page has its own title
        body = mistune.html(text.replace("\n## ", "\n### "))
        parts += ['<h2>Model card <span class="muted">(<a href="model_card.md">model_card.md</a>)</span></h2>',
                  f'<div class="card">{body}</div>']

    parts += _data_sections(run_dir)

    for csv in _experiment_tables(reports_root):
        try:
            import pandas as pd

            table = pd.read_csv(csv)
        except Exception:  # noqa: BLE001 - an unreadable side table must not break the index
            continue
        parts += [f'<h2>Experiments <span class="muted">({e(display_path(csv))})</span></h2>',
                  table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="")]

    parts += _timing_section(summary, summary["run"], profile)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _notebooks_section(summary: Mapping[str, Any]) -> list[str]:
    """A row per executed notebook: its HTML page, the notebook, its status and run time."""
    e = html.escape
    rows = []
    for i, nb in enumerate(summary["notebooks"], 1):
        title = Path(nb["notebook"]).stem
        rows.append(f'<tr><td class="num">{i}</td><td><a href="{e(nb["html"])}">{e(title)}</a></td>'
                    f'<td><a href="{e(nb["notebook"])}">.ipynb</a></td><td>{e(nb["status"])}</td>'
                    f'<td class="num">{_num(nb.get("seconds"), 1)}</td></tr>')
    return ["<h2>Notebooks</h2>",
            '<table><tr><th class="num">#</th><th>report</th><th>notebook</th><th>status</th>'
            '<th class="num">run time (s)</th></tr>', *rows, "</table>"]


def _data_sections(run_dir: Path) -> list[str]:
    """The split table of each set the run trained on, and the committed cross-data-set study."""
    e = html.escape
    parts = ["<h2>Data and splits</h2>"]
    try:
        import pandas as pd

        from seglib.data.descriptions import get
        from seglib.data.selection import set_names
        from seglib.data.splits import split_summary

        folder = Run(run_dir)
        names = set_names(str((folder.config() if folder.config_file.is_file() else {}).get("data") or "human-seg"))
        table = pd.concat([split_summary(get(n).splits_dir()).assign(dataset=n) for n in names], ignore_index=True)
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0))
    except (SeglibError, OSError, KeyError, ValueError) as exc:
        parts.append(f'<p class="muted">split summary unavailable: {e(str(exc))}</p>')
    from seglib.studies.crossdata import study_markdown

    parts += ['<h2>Across data sets <span class="muted">(each model on each registered set\'s test split; '
              'reports/crossdata/, in-domain cells in bold)</span></h2>', mistune.html(study_markdown())]
    return parts


def _timing_section(summary: Mapping[str, Any], run: str, profile: str) -> list[str]:
    """Each notebook's run time, the total, and the command that reproduces the report."""
    e = html.escape
    parts = ["<h2>Timing</h2>", '<table><tr><th>notebook</th><th class="num">run (s)</th></tr>']
    parts += [f'<tr><td>{e(nb["notebook"])}</td><td class="num">{_num(nb.get("seconds"), 1)}</td></tr>'
              for nb in summary["notebooks"]]
    parts += [f'<tr><td><b>total, with HTML rendering</b></td><td class="num">'
              f'{_num(summary.get("seconds_total"), 1)}</td></tr></table>']
    command = summary.get("command") or f"seglib report --profile {profile} --run {run}"
    parts.append(f'<p class="muted">Reproduce: <code>{e(command)} --overwrite</code>'
                 f' · machine-readable summary: <a href="summary.json">summary.json</a></p>')
    return parts


def _headline_block(metrics: Mapping[str, Any]) -> str:
    e = html.escape
    ci = metrics.get("mean_iou_ci95") or [None, None]
    lead = (f'<p><span class="big">mean IoU {_num(metrics.get("mean_iou"), 4)}</span> '
            f'(95% CI {_num(ci[0], 4)}–{_num(ci[1], 4)}) · median {_num(metrics.get("median_iou"), 4)} · '
            f'pooled {_num(metrics.get("pooled_iou"), 4)} · mean Dice {_num(metrics.get("mean_dice"), 4)} · '
            f'mean boundary IoU {_num(metrics.get("mean_boundary_iou"), 4)}<br>'
            f'<span class="muted">{e(str(metrics.get("n_images", "?")))} images · threshold '
            f'{_num(metrics.get("threshold"), 3)}'
            f'{" · TTA" if metrics.get("tta") else ""}'
            f'{" · evaluated " + e(str(metrics["evaluated_at"])) if metrics.get("evaluated_at") else ""}</span></p>')
    try:  # the same table the CLI prints and notebook 04 shows (`evaluate.headline_from_metrics`)
        table = headline_from_metrics(dict(metrics))
    except (KeyError, TypeError, ValueError):
        return lead
    cols = [("mean_iou", "mean IoU"), ("ci95", "95% CI"), ("median_iou", "median IoU"), ("pooled_iou", "pooled IoU"),
            ("mean_dice", "mean Dice"), ("mean_boundary_iou", "mean boundary IoU")]
    head = "".join(f'<th class="num">{label}</th>' for _, label in cols)
    body = []
    for name, row in table.iterrows():
        cells = [f'<td class="num">{_num(row.ci95_low, 3)}–{_num(row.ci95_high, 3)}</td>' if key == "ci95"
                 else f'<td class="num">{_num(row[key], 4)}</td>' for key, _ in cols]
        body.append(f'<tr{" class=model" if name == "model" else ""}><td>{e(str(name))}</td>{"".join(cells)}</tr>')
    return lead + f"<table><tr><th>predictor</th>{head}</tr>{''.join(body)}</table>"


def _kv_table(mapping: Mapping[str, Any]) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_text(v))}</td></tr>" for k, v in mapping.items())
    return f"<table>{rows}</table>"


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _num(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else html.escape(str(value))
    return f"{value:.{digits}f}"


def _experiment_tables(reports_root: Path | None) -> list[Path]:
    candidates = [paths.PROJECT_ROOT / "reports" / "experiments.csv"]
    if reports_root is not None:
        candidates.insert(0, Path(reports_root) / "experiments.csv")
    seen, out = set(), []
    for path in candidates:
        key = path.resolve()
        if key not in seen and path.is_file():
            seen.add(key)
            out.append(path)
    return out


def batch_summary(ctx, kernel: str, records: list, notes: list[str], with_code: bool,
                  total: float | None, command: str = "") -> dict:
    """summary.json: the batch's settings, each notebook's status and time (`records`: runner.NotebookRecord),
    and the run's headline scores."""
    run_dir = ctx.run_dir
    headline = {}
    for split in ("test", "val"):
        metrics = read_json(Run(run_dir).metrics_file(split))
        if metrics:
            headline[split] = {k: metrics.get(k) for k in ("n_images", "threshold", "mean_iou", "mean_iou_ci95",
                                                            "median_iou", "pooled_iou", "mean_dice",
                                                            "mean_boundary_iou") if k in metrics}
    return {
        "run": ctx.run,
        "profile": ctx.profile,
        "kernel": kernel,
        "with_code": with_code,
        "command": command,
        "generated_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seglib_version": seglib.__version__,
        "run_dir": display_path(run_dir),
        "seconds_total": round(total, 2) if total is not None else None,
        "reused": notes,
        "notebooks": [
            {"notebook": r.notebook, "html": f"{r.stem}.html", "status": r.status,
             "seconds": round(r.seconds, 2) if r.seconds is not None else None,
             "parameters": r.parameters, **({"error": r.error} if r.error else {})}
            for r in records
        ],
        "headline": headline,
    }
