"""The package's shape, as the house rules state it: short modules, a training loop and an evaluation that read like
their steps, and one module that knows a run's file names."""

import ast
import io
import tokenize

import pytest

from seglib.infra.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "seglib"
MAX_MODULE_LINES = 450
MAX_STEP_FUNCTION_LINES = 60


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def _body_lines(function: ast.FunctionDef) -> int:
    """Lines of a function from its signature to its end, less its docstring."""
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _function(module: str, name: str) -> ast.FunctionDef:
    tree = ast.parse((PACKAGE / module).read_text())
    found = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == name]
    assert len(found) == 1, f"{module}: expected one function {name}"
    return found[0]


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(PROJECT_ROOT)): n for p in _sources()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


@pytest.mark.parametrize(("module", "name"), [("training/engine.py", "train"), ("evaluate/protocol.py", "evaluate_run")])
def test_the_training_loop_and_the_evaluation_read_like_their_steps(module, name):
    """`engine.train` and `evaluate_run` are their numbered steps, each step a function of its own."""
    assert _body_lines(_function(module, name)) <= MAX_STEP_FUNCTION_LINES


def test_the_counted_lines_leave_out_the_docstring_only():
    tree = ast.parse('def f(x):\n    """One\n    two."""\n    y = x\n    return y\n')
    assert _body_lines(tree.body[0]) == 3


def test_only_runs_py_names_the_files_of_a_run_folder():
    """`best.pt` and `last.pt` are spelled in seglib/runs.py alone (code, docstrings, comments and help texts);
    every other module asks `Run` or uses `runs.BEST` / `runs.LAST`."""
    named = []
    for path in _sources():
        if path.name == "runs.py" and path.parent == PACKAGE:
            continue
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT) and ("best.pt" in token.string
                                                                       or "last.pt" in token.string):
                named.append(f"{path.relative_to(PROJECT_ROOT)}:{token.start[0]}")
    assert named == []


# The layers (docs/development.md): the studies and the command line above the core, infrastructure below it.
UPPER = {"cli", "studies", "report", "__main__.py"}  # may import the studies; nothing else does
MAX_TOP_LEVEL_ENTRIES = 30


def _imported_modules(path) -> set[str]:
    """Every seglib module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.startswith("seglib")}


def test_the_core_imports_nothing_from_the_studies():
    """Only the command line, the report runner and the studies themselves import `seglib.studies`."""
    importing = sorted(str(p.relative_to(PROJECT_ROOT)) for p in _sources()
                       if p.relative_to(PACKAGE).parts[0] not in UPPER
                       and any(m == "seglib.studies" or m.startswith("seglib.studies.") for m in _imported_modules(p)))
    assert importing == []


ABOVE_THE_DATA = ("training", "predict", "evaluate", "label", "viz", "studies", "report", "cli")


def test_the_data_layer_imports_nothing_from_the_layers_that_read_it():
    """`seglib.data` (fetch, register, check, split, read) sits under training, prediction and labelling: a run's
    loaders live in `training`, Label Studio's brush code in `data`, so no arrow runs back up."""
    importing = sorted(f"{p.relative_to(PROJECT_ROOT)} -> {m}" for p in _sources()
                       if p.relative_to(PACKAGE).parts[0] == "data"
                       for m in _imported_modules(p) if m.split(".")[1] in ABOVE_THE_DATA)
    assert importing == []


def test_the_package_has_at_most_thirty_entries_at_its_top():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, entries


def test_no_two_modules_share_a_name_outside_the_command_line():
    """A module's name says one thing: outside `cli/`, no two modules (or a module and a package) share one."""
    names: dict[str, list[str]] = {}
    for path in _sources():
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or path.name in ("__init__.py", "__main__.py"):
            continue
        names.setdefault(path.stem, []).append(str(relative))
    for package in (p for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()):
        if "cli" not in package.relative_to(PACKAGE).parts:
            names.setdefault(package.name, []).append(str(package.relative_to(PACKAGE)) + "/")
    assert {name: where for name, where in names.items() if len(where) > 1} == {}


def test_no_module_imports_a_private_name_of_another_seglib_module():
    """A name one module shares with another is public: no `from seglib.x import _name` across modules."""
    private = sorted(f"{p.relative_to(PROJECT_ROOT)}:{node.lineno} {node.module}.{alias.name}"
                     for p in _sources() for node in ast.walk(ast.parse(p.read_text()))
                     if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("seglib"))
                     for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__"))
    assert private == []


MAX_PARAMETERS = 8
SETTINGS_HEAVY = {"cli", "studies"}  # a command's and a study's many options: exempt from the parameter limit


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """A function's parameter names (*args and **kwargs included), less a leading self or cls."""
    a = function.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg)))]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def _functions():
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE), node


def test_the_core_logs_through_logging_not_a_log_parameter():
    """Messages go to `logging.getLogger(__name__)` (shown by `seglib.infra.logs.show_messages`): no function
    takes a `log` callback."""
    assert [f"{path}:{node.lineno} {node.name}" for path, node in _functions() if "log" in _parameters(node)] == []


def test_no_function_outside_the_command_line_and_the_studies_takes_more_than_eight_parameters():
    """Many settings travel as one option object (a frozen dataclass such as `EvalOptions`)."""
    long = [f"{path}:{node.lineno} {node.name} ({len(_parameters(node))})" for path, node in _functions()
            if path.parts[0] not in SETTINGS_HEAVY and len(_parameters(node)) > MAX_PARAMETERS]
    assert long == []


def test_no_import_cycle_among_the_modules():
    """No module imports, even inside a function, one that imports it back (directly or through others)."""
    modules = {".".join(p.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in _sources()}

    def imports(path) -> set[str]:
        found = set()
        for name in _imported_modules(path):  # `from a.b import c` gives a.b.c when c is a module, else a.b
            found.add(name if name in modules else name.rpartition(".")[0])
        return {name for name in found if name in modules}

    graph = {name: imports(path) - {name} for name, path in modules.items()}
    cycles, done = [], set()

    def visit(name, trail):
        if name in trail:
            cycles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []
