"""Text from data (file names, class names, ids, notes, error messages) shown as text, never as markup.

Two renderers read text as markup: Streamlit's Markdown (``st.markdown``, ``st.caption``, the
``st.error`` family, ``st.toast``, titles, widget labels and ``help=``, metric labels and values,
``st.table`` cells, image captions, radio options) and plotly (hover text, trace and legend names,
annotations and subplot titles read a subset of HTML: ``<b>``, ``<a href=...>``). Widgets that
show plain text (``st.text``, ``st.code``, inputs, selectbox and multiselect options,
``st.dataframe`` cells) take the text as it is: escaping there would show the backslashes.
"""
from __future__ import annotations

import re

# Every ASCII punctuation character, each of which CommonMark lets a backslash escape: emphasis, code,
# links, HTML, entities (&...;), LaTeX ($), Streamlit's :colour[...] and :icon: directives, tables,
# strike-through, and the line-start constructs (#, >, -, +, 1.) of a text that begins a line.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub-flavoured Markdown links bare addresses (``https://...``, ``www.``, ``name@host``) in the text
# left once the escapes are read, so an escaped address is still a live link: a word joiner (U+2060,
# invisible, no line break) after the scheme's colon, after ``www`` and after ``@`` breaks the pattern.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(\\:)(?=\\/\\/)|(?<![a-z0-9])(www)(?=\\\.)|(\\@)")


def escape(text: str) -> str:
    """``text`` as Markdown that shows exactly ``text`` (plus invisible word joiners inside bare web
    and mail addresses): every ASCII punctuation character backslash-escaped and autolinks broken.
    For every call that renders Markdown (see the module docstring)."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
    return _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, escaped)


def plotly_text(text: str) -> str:
    """``text`` as plotly shows it in hover labels, trace (legend) names, annotations and subplot
    titles: ``&``, ``<`` and ``>`` as entities, so none of it is read as a tag (``<b>``, ``<a href=...>``)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
