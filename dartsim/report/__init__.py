"""Reports: tables, Table 7, and their renderings (markdown, CSV, JSON, LaTeX)."""
