"""The candidate models of the generality table, as reports/generality/models.yaml lists them, and the default
among them (`default:`, the multi-domain val rule's choice: the model `seglib predict` and `seglib label` use when
none is named). Light on purpose: reading the list imports neither torch nor pandas, so a prediction does not pay
for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seglib.infra import paths
from seglib.infra.errors import ConfigError
from seglib.infra.paths import display_path

STUDY = "generality"  # reports/generality/ holds the list
MODELS_FILE = "models.yaml"


def models_file() -> Path:
    """The committed list of candidates: reports/generality/models.yaml of the project."""
    return paths.PROJECT_ROOT / "reports" / STUDY / MODELS_FILE


@dataclass(frozen=True)
class Candidate:
    """One candidate model of the table, as models.yaml lists it."""

    name: str
    checkpoint: str  # as written: relative to the project unless absolute
    about: str
    tta: bool = True
    # the candidate whose recipe this one is, run again with another seed and nothing else changed: scored like
    # every candidate but shown as that recipe's spread under the table, never as a row (nothing is chosen with it)
    seed_of: str = ""

    @property
    def path(self) -> Path:
        path = Path(self.checkpoint).expanduser()
        return path if path.is_absolute() else paths.PROJECT_ROOT / path

    def scored(self, study: Path):
        """The candidate as the studies score it (`domains.Scored`), its evaluations in `study`/NAME/."""
        from seglib.studies.domains import Scored

        return Scored.of_checkpoint(self.name, self.path, Path(study) / self.name, self.tta)


def _listing(path: Path) -> dict:
    """models.yaml as a mapping; a file that cannot be read or parsed is a ConfigError naming it."""
    from seglib.infra.values import load_yaml

    where = display_path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), where)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the list of candidate models ({exc.strerror or exc})") from None
    return data if isinstance(data, dict) else {}


def read_models(path: Path | None = None) -> list[Candidate]:
    """The candidates of a models.yaml (`models:` a list of {name, checkpoint, about, tta}); a wrong entry is a
    ConfigError naming the file."""
    from seglib.runs import check_run_name

    path = Path(path) if path is not None else models_file()
    where = display_path(path)
    entries = _listing(path).get("models")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: expected `models:`, a list of entries with name, checkpoint and about")
    found: list[Candidate] = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) - {"name", "checkpoint", "about", "tta", "seed_of"} \
                or not {"name", "checkpoint", "about"} <= set(entry):
            raise ConfigError(f"{where}: entry {i} needs name, checkpoint and about (and may give tta and seed_of), "
                              "nothing else")
        if not isinstance(entry.get("tta", True), bool):
            raise ConfigError(f"{where}: entry {i}: tta is true or false")
        try:
            name = check_run_name(str(entry["name"]))
        except ConfigError as exc:
            raise ConfigError(f"{where}: entry {i}: {exc}") from None
        if any(c.name == name for c in found):
            raise ConfigError(f"{where}: the name {name!r} is listed twice")
        found.append(Candidate(name, str(entry["checkpoint"]), str(entry["about"]), entry.get("tta", True),
                               str(entry.get("seed_of") or "")))
    recipes = {c.name for c in found if not c.seed_of}
    for c in found:
        if c.seed_of and c.seed_of not in recipes:
            raise ConfigError(f"{where}: {c.name}: seed_of: {c.seed_of!r} is not one of its models (or is itself "
                              "another seed's run)")
    return found


def default_candidate(path: Path | None = None) -> Candidate | None:
    """The candidate models.yaml names `default:`, the multi-domain val rule's choice: the model `seglib predict`
    and `seglib label` use when none is named (None where no default is named)."""
    path = Path(path) if path is not None else models_file()
    name = _listing(path).get("default")
    if name is None:
        return None
    for candidate in read_models(path):
        if candidate.name == name and not candidate.seed_of:
            return candidate
    raise ConfigError(f"{display_path(path)}: default: {name!r} is not one of its models (a seed_of entry is a "
                      "recipe's spread, not a model to default to)")
