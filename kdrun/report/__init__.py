"""kdrun-table: aggregate sweep cells into tables and plots.

collect.py reads cells (result.json, plus planned cells that never wrote one),
table.py groups them over seeds, render.py writes markdown / CSV / LaTeX,
reference.py adds published numbers, plots.py draws PNGs, cli.py is the command.
"""
