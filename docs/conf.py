"""Sphinx configuration for the mscomm_sync docs (built with -W in CI)."""

project = "mscomm_sync"
author = "mscomm_sync developers"
copyright = "2026, mscomm_sync developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
myst_heading_anchors = 3
autodoc_typehints = "description"
nitpicky = False
