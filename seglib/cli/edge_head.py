"""`seglib edge-head`: the learned edge-refinement head (lever e's second option) trained on a model's training
photos and judged by the multi-domain val rule (`seglib.studies.edge_head`)."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    """Register `seglib edge-head`."""
    p = subparsers.add_parser(
        "edge-head", help="train a small edge-refinement head per variant and score it by the multi-domain val rule",
        description="Predict the photos the checkpoint trained on and every registered set's val photos once (its "
                    "val threshold and TTA), train a small head that corrects the probabilities' edges at the "
                    "photo's resolution for each variant, and print each variant's multi-domain val score beside "
                    "the model's own, with the rule's decision (a lever about edges: its boundary IoU more than "
                    "+0.005 higher). Each variant's "
                    "multi_domain_val.json goes to --out/<variant>/ for `seglib experiments --variant`.")
    p.add_argument("--checkpoint", type=Path,
                   help="the model (default: the default model of reports/generality/models.yaml)")
    p.add_argument("--name", help="the model's name in the records (default: its candidate name in models.yaml, "
                                  "else the checkpoint's folder)")
    p.add_argument("--variants", default="real,sim,mix-gate",
                   help="comma-separated KIND or KIND-gate, KIND one of real, sim, mix (default: real,sim,mix-gate)")
    p.add_argument("--steps", type=int, default=1000, help="training batches of 16 crops per head (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="the heads' seed (default: 0)")
    p.add_argument("--out", type=Path, help="where the records go (default: reports/edge_head/NAME)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=cmd_edge_head)


def cmd_edge_head(args) -> int:
    from seglib.cli.options import name_default_model
    from seglib.infra.errors import SeglibError
    from seglib.infra.locks import exclusive, output_folder
    from seglib.infra.paths import PROJECT_ROOT, display_path
    from seglib.studies.crossval import ADOPT_MARGIN
    from seglib.studies.edge_head import edge_head_study, parse_variant

    name_default_model(args, ("checkpoint",))
    if not Path(args.checkpoint).is_file():
        raise SeglibError(f"{args.checkpoint}: no such checkpoint")
    if args.steps < 1:
        raise SeglibError(f"--steps {args.steps}: expected a positive number of batches")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in variants:
        parse_variant(variant)  # a bad one is refused before any work
    name = args.name or _candidate_name(Path(args.checkpoint)) or Path(args.checkpoint).resolve().parent.name
    out = args.out or PROJECT_ROOT / "reports" / "edge_head" / name
    with exclusive(output_folder(out), str(out)):  # one study writes a folder at a time; a second is refused at once
        records = edge_head_study(args.checkpoint, name, variants, out, steps=args.steps, seed=args.seed,
                                  device=args.device)
    base = records[0]
    print(f"{'model':<52} {'val':>7} {'bIoU':>7}  by set (mean IoU/boundary IoU)")
    for r in records:
        by_set = ", ".join(f"{k} {v['mean_iou']:.4f}/{v['mean_boundary_iou']:.4f}" for k, v in r["sets"].items())
        print(f"{r['model']:<52} {r['mean_iou']:7.4f} {r['mean_boundary_iou']:7.4f}  {by_set}")
    for r in records[1:]:  # a lever about edges: decided on the rule's boundary IoU (docs/recipes.md)
        gain = r["mean_boundary_iou"] - base["mean_boundary_iou"]
        print(f"{r['levers']}: boundary IoU {gain:+.4f} (mean IoU {r['mean_iou'] - base['mean_iou']:+.4f}): "
              f"{'adopted' if gain > ADOPT_MARGIN else 'not adopted'} (more than +{ADOPT_MARGIN} adopts)")
    for r in records[1:]:
        print(f"wrote {display_path(out / r['levers'] / 'multi_domain_val.json')}")
    return 0


def _candidate_name(checkpoint: Path) -> str | None:
    """The models.yaml name of the candidate whose checkpoint is this file, if any."""
    from seglib.studies.candidates import models_file, read_models

    if not models_file().is_file():
        return None
    found = [c.name for c in read_models(None) if c.path.resolve() == checkpoint.resolve()]
    return found[0] if found else None
