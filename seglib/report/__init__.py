"""`seglib report`: run the numbered notebooks with papermill and publish them as HTML with an index page.

One profile and one run name go to every notebook (each gets only the parameters it declares), the kernel is
pinned ("seglib", registered by `make setup`) and notebooks run with `notebooks/` as their working directory.
Everything is checked before the first notebook starts: the profile and run name, every `-p key=value`
(the name must be declared by a notebook, the value must match its type hint), the kernel, the output folder.

Outputs, in `reports/NAME/`: each executed notebook (`01_....ipynb`), its HTML rendering (`01_....html`,
code hidden unless `with_code`), `index.html` (links, headline metrics, run config, training and split summary,
timings) and `summary.json`. The batch runs in a staging folder (`reports/.NAME.partial/`), which replaces
`reports/NAME` only when every notebook succeeded (an existing report is only replaced with `overwrite`).
A failing notebook stops the batch: the staging folder becomes `reports/NAME.failed/` (the partially executed
notebook included), the previous report stays as it was, and a SeglibError names the notebook and the cell.

Modules: `params` (which parameters each notebook gets), `runner` (the batch), `html` (nbconvert),
`index` (the landing page).
"""

from seglib.infra import paths  # tests and callers patch paths.notebooks_dir through here
from seglib.report.html import WIDGET_MIME, render_html
from seglib.report.index import index_html
from seglib.report.params import (
    NOTEBOOK_PATTERN,
    RESERVED,
    NotebookParam,
    coerce_param,
    find_notebooks,
    notebook_arguments,
    notebook_parameters,
    parse_param_args,
)
from seglib.report.runner import (
    DEFAULT_KERNEL,
    INLINE_BACKEND,
    PROGRESS_LINE,
    NotebookRecord,
    ReportOptions,
    check_kernel,
    reuse_notes,
    run_report,
)
