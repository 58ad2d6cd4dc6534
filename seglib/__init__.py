"""seglib: the support package of the Human Figure Segmentation Workbook."""

import os as _os

# albumentations checks PyPI for updates on import; this workbook must run offline.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
