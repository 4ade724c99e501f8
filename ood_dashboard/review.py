"""Review marks in the dashboard: the store (one per server), the marks of the current data, badges,
mark buttons, and the large view of one image (``st.dialog``) that every grid and table opens.

Marks live in ``ood_core.ReviewStore`` (SQLite under the user data folder), keyed by the data's
content (``ood_core.dataset_key``), so they survive restarts and re-runs with other settings.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import streamlit as st

import ood_core
from ood_core.review import split_key
from ood_dashboard.markup import escape
from ood_dashboard.state import BATCH_VIEW, MARK_ERROR, MARK_ERROR_DISMISS, page_key, part_key
from ood_dashboard.thumbnails import thumbnail, upscale
from ood_dashboard.uploads import check_destination

BADGES = {"outlier": "⚑ outlier", "fine": "✓ fine", "unsure": "? unsure"}
ICONS = {"outlier": ":material/flag:", "fine": ":material/check_circle:", "unsure": ":material/help:"}
FILTERS = {"all": "All", "unreviewed": "Not reviewed", **{v: v.capitalize() for v in ood_core.VERDICTS}}


@st.cache_resource(show_spinner=False)
def store() -> ood_core.ReviewStore:
    """The review store of this server (one SQLite file; safe across sessions and processes)."""
    return ood_core.ReviewStore()


def marks(analysis: ood_core.Analysis) -> dict[str, ood_core.Mark]:
    """The marks of the current data, read fresh (another session or the CLI may have marked); none,
    with a warning, when the marks file cannot be read (the pages still work)."""
    try:
        return store().marks(ood_core.dataset_key(analysis))
    except ood_core.ReviewStoreError as exc:
        st.warning(f"Review marks are unavailable: {escape(str(exc))}", icon=":material/warning:")
        return {}


def mark(analysis: ood_core.Analysis, positions: Sequence[int], verdict: str | None, note: str | None = None) -> bool:
    """Mark the items at ``positions`` (one transaction); ``verdict=None`` clears their marks. Whether it
    was saved: when not, the error is shown here and kept (``state.MARK_ERROR``) so that
    :func:`mark_error_notice` shows it atop every page after a rerun, until dismissed or a mark is saved."""
    return mark_ids(ood_core.dataset_key(analysis), [analysis.ids[int(p)] for p in positions], verdict, note,
                    label=analysis.source, split=split_key(analysis))


def mark_ids(key: str, ids: Sequence[str], verdict: str | None, note: str | None = None, *, label: str,
             split: str) -> bool:
    """:func:`mark` for items named by id under dataset ``key``, made under ``split`` (a split key, or
    ``ood_core.review.reference_split_key`` for a batch checked against a reference)."""
    if not ids:
        return True
    try:
        if verdict is None:
            store().clear(key, ids)
        else:
            store().mark(key, list(ids), verdict, note, label=label, split=split)
    except (ood_core.ReviewStoreError, OSError) as exc:  # OSError: a full disk, a read-only data folder
        what = f"clear the marks of {len(ids):,} image(s)" if verdict is None else \
            f"mark {len(ids):,} image(s) {verdict}"
        st.session_state[MARK_ERROR] = (f"Could not {what}: nothing was saved ({escape(str(exc))}). The badges show "
                                        "the marks that are saved.")
        st.error(st.session_state[MARK_ERROR], icon=":material/error:")
        return False
    st.session_state.pop(MARK_ERROR, None)
    return True


def mark_error_notice() -> None:
    """The last failed mark (:func:`mark`), until dismissed or a mark is saved; drawn atop every page."""
    message = st.session_state.get(MARK_ERROR)
    if message is None:
        return
    text, button = st.columns([6, 1], vertical_alignment="center")
    text.error(message, icon=":material/error:")
    button.button("Dismiss", key=MARK_ERROR_DISMISS, icon=":material/close:",
                  on_click=lambda: st.session_state.pop(MARK_ERROR, None))


def badge(item_marks: Mapping[str, ood_core.Mark], item_id: str) -> str:
    """The badge of an item for captions ("" when not reviewed)."""
    found = item_marks.get(item_id)
    return BADGES[found.verdict] if found is not None else ""


def shown(positions: np.ndarray, item_marks: Mapping[str, ood_core.Mark], ids: Sequence[str], which: str) -> np.ndarray:
    """Which of ``positions`` a review filter shows (a boolean mask): ``all``, ``unreviewed`` or one verdict."""
    if which == "all":
        return np.ones(len(positions), dtype=bool)
    verdicts = [item_marks[ids[p]].verdict if ids[p] in item_marks else "unreviewed" for p in positions]
    return np.asarray([v == which for v in verdicts], dtype=bool).reshape(-1)


def bulk_buttons(analysis: ood_core.Analysis, positions: Sequence[int], key: str, what: str) -> None:
    """"Mark all N ... as" buttons for a grid, a selection or a table's rows."""
    positions = list(positions)
    if not positions:
        return
    cols = st.columns([2, 1, 1, 1, 1], vertical_alignment="center")
    cols[0].caption(f"Mark all {len(positions):,} {what} as")
    for col, verdict in zip(cols[1:], ood_core.VERDICTS):
        if col.button(verdict, key=part_key(key, f"bulk_{verdict}"), icon=ICONS[verdict], width="stretch"):
            if mark(analysis, positions, verdict):  # else its error shows here, and atop the page from now on
                st.toast(f"Marked {len(positions):,} images {verdict}", icon=ICONS[verdict])
                st.rerun()  # the grids above were drawn before the click: redraw them with their badges
    if cols[4].button("clear", key=part_key(key, "bulk_clear"), icon=":material/backspace:", width="stretch"):
        if mark(analysis, positions, None):
            st.rerun()


@st.dialog("Image", width="large")
def item_view(analysis: ood_core.Analysis, position: int) -> None:
    """One image large, with everything known about it, its nearest train images, and the mark buttons."""
    item_id = analysis.ids[position]
    current = marks(analysis).get(item_id)
    left, right = st.columns([1, 1.3], gap="medium")
    with left:
        if analysis.items is not None:
            st.image(upscale(analysis.items.load_image(position), 320), output_format="PNG")
        else:
            st.caption("Precomputed features: no image to show.")
    with right:
        st.markdown(f"**{escape(item_id)}**")
        sets = [name for name, index in (("train (fit)", analysis.fit_index), ("test (query)", analysis.query_index))
                if position in index]
        # st.table renders each cell as Markdown: every text from the data is escaped
        facts = {"position": f"#{position}", "path": escape(analysis.paths[position]),
                 "class": escape(analysis.class_name(position)) or "unknown", "set": " and ".join(sets)}
        query_row = np.flatnonzero(analysis.query_index == position)
        if len(query_row) and analysis.is_ood is not None:
            facts["known truth"] = "out of distribution" if analysis.is_ood[query_row[0]] else "in distribution"
        for scorer in analysis.scorers:
            score = float(analysis.item_scores(scorer)[position])
            reached = ood_core.percentile_of(analysis.scores(scorer)[0], score)
            facts[ood_core.SCORERS[scorer].title] = f"{score:.4f} (higher than {reached:.1f}% of train)"
        facts["review"] = mark_facts(current)
        st.table({"": list(facts), "value": list(facts.values())}, border="horizontal", hide_index=True,
                 hide_header=True)
        mark_buttons(current, f"{position}", lambda verdict, note: mark(analysis, [position], verdict, note))
    result = analysis.explain(position, k=min(8, len(analysis.fit_index) - 1))
    st.caption(f"Its {len(result['positions'])} nearest train (fit) images (mean distance "
               f"{result['mean_distance']:.4f}):")
    if analysis.items is not None:
        cols = st.columns(len(result["positions"]))
        for col, p, d in zip(cols, result["positions"], result["distances"]):
            col.image(thumbnail(analysis, int(p)), caption=f"#{p} · d {d:.3f}", width="content")
    st.caption(f"Marks are saved in {store().path}.")


def mark_buttons(current: ood_core.Mark | None, item: str, save) -> None:
    """The note and the mark buttons of a large view; ``save(verdict or None, note)`` stores the mark
    (whether it was saved: when not, the dialog stays open, saying why)."""
    note = st.text_input("Note (optional)", value=current.note if current else "", key=page_key("view", f"note_{item}"))
    cols = st.columns(4)
    for col, verdict in zip(cols, ood_core.VERDICTS):
        if col.button(verdict, key=page_key("view", f"mark_{verdict}"), icon=ICONS[verdict], width="stretch",
                      type="primary" if current and current.verdict == verdict else "secondary"):
            if save(verdict, note):
                st.rerun()
    if cols[3].button("clear", key=page_key("view", "mark_clear"), icon=":material/backspace:", width="stretch",
                      disabled=current is None):
        if save(None, None):
            st.rerun()


def mark_facts(current: ood_core.Mark | None) -> str:
    """A mark as the large view's "review" line."""
    return (f"{current.verdict}" + (f": {escape(current.note)}" if current.note else "")
            + f" ({current.updated_at:%Y-%m-%d %H:%M} UTC)") if current else "not reviewed"


def batch_marks(result) -> dict[str, ood_core.Mark]:
    """The marks of a checked batch's images (``ood_core.reference.BatchResult`` with images), kept under
    the batch's data like any other data's; none, with a warning, when the file cannot be read."""
    try:
        return store().marks(ood_core.dataset_key(result.items))
    except ood_core.ReviewStoreError as exc:
        st.warning(f"Review marks are unavailable: {escape(str(exc))}", icon=":material/warning:")
        return {}


def open_batch_view(result, position: int) -> None:
    """Open the batch image at ``position`` large; it stays open across reruns (a note typed, a mark
    that could not be saved) until it is closed or a mark is saved."""
    st.session_state[BATCH_VIEW] = (result.batch_digest, int(position))


def batch_view_position(result) -> int | None:
    """The position of ``result``'s image open in the large view, None when none is."""
    found = st.session_state.get(BATCH_VIEW)
    return found[1] if found is not None and found[0] == result.batch_digest and found[1] < result.n else None


def _close_batch_view() -> None:
    st.session_state.pop(BATCH_VIEW, None)


@st.dialog("Image", width="large", on_dismiss=_close_batch_view)
def batch_item_view(result, position: int, scorer: str) -> None:
    """One image of a checked batch large (``result``: a ``BatchResult`` with images), its scores against
    the reference's frozen thresholds, and the mark buttons; a mark records the reference and the
    batch it was made against (``ood_core.review.reference_split_key``)."""
    from ood_core.review import reference_split_key

    def save(verdict: str | None, note: str | None) -> bool:
        saved = mark_ids(ood_core.dataset_key(result.items), [item_id], verdict, note, label=result.name, split=split)
        if saved:
            _close_batch_view()
        return saved

    item_id = result.ids[position]
    current = batch_marks(result).get(item_id)
    left, right = st.columns([1, 1.3], gap="medium")
    left.image(upscale(result.items.load_image(position), 320), output_format="PNG")
    with right:
        st.markdown(f"**{escape(item_id)}**")
        facts = {"path": escape(result.paths[position]), "class": escape(result.labels[position]) or "unknown"}
        if result.predicted is not None:
            facts["predicted class"] = escape(result.predicted[position])
        for name in result.scorers:
            score, threshold = float(result.scores[name][position]), result.thresholds[name]
            facts[ood_core.SCORERS[name].title] = (f"{score:.4f} ({'flagged: below' if score < threshold else 'not below'}"
                                                  f" the frozen threshold {threshold:.4f})")
        facts["review"] = mark_facts(current)
        st.table({"": list(facts), "value": list(facts.values())}, border="horizontal", hide_index=True,
                 hide_header=True)
        split = reference_split_key(result.reference_digest, result.batch_digest)
        mark_buttons(current, f"batch_{position}", save)
    st.caption(f"Opened from the {ood_core.SCORERS[scorer].title} grid. Marks are saved in {store().path}.")


def progress(analysis: ood_core.Analysis, scorer: str, threshold: float,
             item_marks: Mapping[str, ood_core.Mark]) -> None:
    """How many flagged test images are reviewed, and (without known truth) the precision the marks imply."""
    summary = ood_core.review_summary(analysis, item_marks, scorer, threshold)
    st.subheader("Review")
    cols = st.columns(4)
    cols[0].metric("Flagged test images reviewed", f"{summary.reviewed:,} of {summary.flagged:,}",
                   help="Mark images from any grid (View), a selection on the embedding map, or the table.")
    for col, verdict in zip(cols[1:], ood_core.VERDICTS):
        col.metric(f"Flagged, marked {verdict}", f"{summary.verdicts[verdict]:,}")
    estimate = summary.precision
    if analysis.is_ood is None:
        if estimate.n:
            st.caption(f"Precision at this threshold, estimated from your marks: **{estimate.precision:.2f}** "
                       f"(95% interval {estimate.low:.2f} to {estimate.high:.2f}, from {estimate.n} flagged "
                       "images marked outlier or fine). It holds for all flagged images when the reviewed ones are "
                       "a fair sample of them: review borderline images too, not only the most extreme.")
        else:
            st.caption("Mark flagged test images outlier or fine to estimate the precision at this threshold.")


def export_panel(analysis: ood_core.Analysis, scorer: str, threshold: float,
                 item_marks: Mapping[str, ood_core.Mark]) -> None:
    """The marks as CSV (with both scores), and copies of flagged or marked images into a folder."""
    c1, c2 = st.columns([1, 3])
    c1.download_button("Marks (CSV)", data=lambda: ood_core.review_csv(analysis, item_marks, {scorer: threshold}),
                       file_name="review_marks.csv", mime="text/csv", on_click="ignore", icon=":material/download:",
                       key=page_key(scorer, "export_marks"), disabled=not item_marks)
    with c2.expander("Copy images into a folder", icon=":material/folder_copy:"):
        which = st.radio("Which", ["flagged test images", "images marked outlier"], horizontal=True,
                         key=page_key(scorer, "copy_which"))
        text = st.text_input("Destination folder", key=page_key(scorer, "copy_dest"), placeholder="/path/to/new/folder")
        if st.button("Copy", key=page_key(scorer, "copy"), icon=":material/content_copy:", disabled=not text):
            positions = (ood_core.flagged_positions(analysis, scorer, threshold) if which.startswith("flagged")
                         else ood_core.marked_positions(analysis.ids, item_marks, ["outlier"]))
            try:
                written = ood_core.copy_items(analysis, positions, check_destination(text))
            except (ValueError, OSError) as exc:
                st.error(f"Could not copy: {escape(str(exc))}")
            else:
                st.success(f"Copied {len(written):,} images into {escape(text)} (original files, same relative "
                           "paths).")
