"""Sphinx configuration for the libe-gc-bundle documentation.

Writing pages: add a new page to the ``index.rst`` toctree section whose readers need it.
Pictures are DOT text under ``diagrams/`` drawn at build time by ``sphinx.ext.graphviz``
(Graphviz's ``dot`` must be on PATH); ``diagrams/block.dot`` is the nodes / slots / ranks /
GPUs picture to extend as the templates grow.  ``tests/docs/test_browser.py`` opens every
top-level page in headless Chromium at 1280 px: keep code lines under about 80 characters
and let wide tables wrap.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import bundle  # noqa: E402

project = "libe-gc-bundle"
author = "libe-gc-bundle contributors"
copyright = "2026, libe-gc-bundle contributors"
release = bundle.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.graphviz",
    "template_reference",
    "myst_parser",
]

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Third-party bases and types that have no inventory here: do not warn about them.
nitpicky = False
suppress_warnings = ["ref.python"]

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

templates_path: list[str] = []
exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext"}
myst_heading_anchors = 3
html_theme = "furo"
html_title = f"libe-gc-bundle {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {"navigation_with_keys": True, "top_of_page_buttons": []}

# Architecture pictures are drawn from their DOT text at build time (Debian package ``graphviz``).
graphviz_output_format = "svg"
if shutil.which("dot") is None:
    raise RuntimeError(
        "the docs draw their pictures with Graphviz's `dot`, which is not on PATH: "
        "install it (Debian/Ubuntu: apt-get install graphviz; conda: conda install graphviz)"
    )
