"""A Table as text: markdown (default), CSV or LaTeX, all from one grid of strings.

Every format shows the same strings, so a number in table.tex is the number in
table.md. Words ("failed", "running", "missing", "—") stand where there is no
completed cell: a reader never mistakes a missing result for a zero.
"""

from __future__ import annotations

import csv
import io

from kdrun.report.collect import IDENTITY_KEYS
from kdrun.report.table import ABSENT, INCOMPLETE, Aggregate, Table

FORMATS = {"markdown": "md", "csv": "csv", "latex": "tex"}


def _n_varies(table: Table) -> bool:
    return len({a.n for a in table.cells.values() if a.n}) > 1


def _counts_text(agg: Aggregate) -> str:
    order = ("failed", "running", "missing", "n/a")
    return ", ".join(f"{agg.counts[s]} {s}" for s in order if agg.counts[s])


def render_value(agg: Aggregate | None, p: int, show_n: bool) -> str:
    """'72.31 ± 0.40', '72.31 ± 0.40 (n=2)', '72.31 (n=1 of 2: 1 failed)*', 'failed' or '—'."""
    if agg is None or agg.total == 0:
        return ABSENT
    if not agg.values:
        kinds = [s for s, k in agg.counts.items() if k]
        return kinds[0] if len(kinds) == 1 else ", ".join(f"{s} ({agg.counts[s]})" for s in kinds)
    text = f"{agg.mean:.{p}f}" + (f" ± {agg.std:.{p}f}" if agg.std is not None else "")
    if agg.n < agg.total:
        return f"{text} (n={agg.n} of {agg.total}: {_counts_text(agg)}){INCOMPLETE}"
    return f"{text} (n={agg.n})" if show_n else text


def _label(key: str, value: str) -> str:
    return value if key in IDENTITY_KEYS else f"{key}={value}"


def grid(table: Table, precision: int = 2) -> tuple[list[str], list[list[str]]]:
    """(header, body rows) of the table, ref/Δ columns included when there is a reference."""
    show_n = _n_varies(table)
    row_header = list(table.row_keys) or [""]
    col_names = [", ".join(_label(k, v) for k, v in zip(table.col_keys, col)) or table.metric
                 for col in table.cols]
    header = list(row_header)
    for name in col_names:
        header.append(name)
        if table.ref is not None:
            prefix = f"{name} " if len(table.cols) > 1 else ""
            header += [f"{prefix}ref", f"{prefix}Δ"]
    body = []
    for row in table.rows:
        line = list(row) if table.row_keys else [table.metric]
        for col in table.cols:
            agg = table.cells.get((row, col))
            line.append(render_value(agg, precision, show_n))
            if table.ref is not None:
                ref = table.ref.get((row, col))
                line.append(ABSENT if ref is None else f"{ref:.{precision}f}")
                ours = agg.mean if agg is not None else None
                line.append(ABSENT if ref is None or ours is None else f"{ours - ref:+.{precision}f}")
        body.append(line)
    return header, body


def notes(table: Table) -> list[str]:
    """Lines under the table: what the numbers are, and what the markers mean."""
    ns = sorted({a.n for a in table.cells.values() if a.n})
    if ns == [1]:
        what = "one seed per cell (no std)"
    else:
        what = f"mean ± std over {ns[0] if len(ns) == 1 else 'n'} seeds (std with n-1)"
    lines = [f"{table.metric}: {what}; {ABSENT}: no such cell"]
    if any(a.values and a.n < a.total for a in table.cells.values()):
        lines.append(f"{INCOMPLETE} some seeds did not complete: mean over the completed ones")
    if table.ref is not None:
        lines.append(f"ref: published top-1 ({ABSENT}: none published); Δ = ours - ref")
    return lines


def to_markdown(header: list[str], body: list[list[str]], label_cols: int) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join("---" if i < label_cols else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in body]
    return "\n".join(lines)


def to_csv(header: list[str], body: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue().rstrip("\n")


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
          "±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "*": r"$^{*}$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(header: list[str], body: list[list[str]], label_cols: int) -> str:
    spec = "l" * label_cols + "r" * (len(header) - label_cols)
    lines = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(map(latex_escape, header)) + r" \\", r"\midrule"]
    lines += [" & ".join(map(latex_escape, row)) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def render(table: Table, fmt: str, precision: int = 2) -> str:
    """The table in `fmt` (markdown | csv | latex), notes included where the format allows."""
    header, body = grid(table, precision)
    label_cols = max(1, len(table.row_keys))
    if fmt == "markdown":
        return to_markdown(header, body, label_cols) + "\n\n" + "\n".join(notes(table)) + "\n"
    if fmt == "csv":
        return to_csv(header, body) + "\n"
    if fmt == "latex":
        comments = "".join(f"% {line}\n" for line in notes(table))
        return comments + to_latex(header, body, label_cols) + "\n"
    raise ValueError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
