"""CSV text of table rows, as the CLI writes and the dashboard downloads it."""
from __future__ import annotations

import csv
import io
from typing import Any

# A text cell starting with one of these is read as a formula by spreadsheet programs.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Floats with full precision; text that a spreadsheet would run as a formula (``=1+2``,
    ``@SUM(...)``) prefixed with a single quote; numbers stay numbers."""
    if isinstance(value, float):
        return repr(float(value))  # np.float64 too, without its "np.float64(...)" repr
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of rows sharing their keys (floats written with full precision, formula-like text
    cells neutralised)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writerow({k: _cell(k) for k in rows[0]})
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()
