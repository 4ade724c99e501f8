"""CSV text of table rows, as the CLI writes and the dashboard downloads it."""
from __future__ import annotations

import csv
import io
from typing import Any


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of rows sharing their keys (floats written with full precision)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()
