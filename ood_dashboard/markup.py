"""Text from data (file names, class names, error messages) shown as text, never as markup."""
from __future__ import annotations

import re

# What turns text into markup in the middle of a line: emphasis, code, links, HTML, LaTeX, Streamlit's
# :colour[...] and :icon: directives, tables, strike-through.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>$:|~])")


def escape(text: str) -> str:
    """``text`` with every Markdown and HTML special character escaped, for ``st.markdown`` and
    the ``st.caption``/``st.error`` family, which render Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
