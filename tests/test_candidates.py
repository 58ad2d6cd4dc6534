"""seglib.studies.candidates: the generality table's list of candidate models and its default, checked with one line
naming the file; reading it imports no torch (a prediction pays nothing for it)."""

import subprocess
import sys

import pytest

from seglib.infra.errors import ConfigError
from seglib.studies import candidates


def test_the_models_list_and_its_default_are_checked_with_one_line_naming_the_file(tmp_path):
    path = tmp_path / "models.yaml"
    for text, says in (
            ("models:\n  - {name: a, checkpoint: x.pt, about: one}\n  - {name: a, checkpoint: y.pt, about: two}\n",
             r"models.yaml: the name 'a' is listed twice"),
            ("models:\n  - {name: a, checkpoint: x.pt, about: one, colour: red}\n",
             r"entry 1 needs name, checkpoint and about"),
            ("default: b\nmodels:\n  - {name: a, checkpoint: x.pt, about: one}\n",
             r"models.yaml: default: 'b' is not one of its models"),
            ("models:\n  - {name: a, checkpoint: x.pt, about: one}\n  - {name: b, checkpoint: y.pt, about: two, "
             "seed_of: c}\n", r"models.yaml: b: seed_of: 'c' is not one of its models"),
            ("models:\n  - {name: a, checkpoint: x.pt, about: one}\n  - {name: b, checkpoint: y.pt, about: two, "
             "seed_of: a}\n  - {name: c, checkpoint: z.pt, about: three, seed_of: b}\n",
             r"c: seed_of: 'b' is not one of its models \(or is itself another seed's run\)"),
            ("default: b\nmodels:\n  - {name: a, checkpoint: x.pt, about: one}\n  - {name: b, checkpoint: y.pt, "
             "about: two, seed_of: a}\n", r"default: 'b' is not one of its models \(a seed_of entry")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=says):
            candidates.default_candidate(path) if text.startswith("default") else candidates.read_models(path)
    path.write_text("models:\n  - {name: a, checkpoint: x.pt, about: one}\n  - {name: b, checkpoint: y.pt, about: "
                    "two, seed_of: a}\n")
    assert [(c.name, c.seed_of) for c in candidates.read_models(path)] == [("a", ""), ("b", "a")]
    assert candidates.default_candidate(path) is None
    assert [c.name for c in candidates.read_models()]  # the committed list reads
    committed = candidates.default_candidate()  # and its default is here: `seglib predict` uses it
    assert committed is not None and committed.path.is_file()


def test_reading_the_list_imports_neither_torch_nor_pandas():
    code = ("import sys; from seglib.studies.candidates import default_candidate; default_candidate(); "
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
