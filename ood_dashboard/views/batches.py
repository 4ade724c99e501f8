"""Batches: a new batch of images checked against a saved reference's frozen thresholds, with odds."""
import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

import ood_core
from ood_core.reference import Reference, ReferenceError, read_history
from ood_dashboard import review
from ood_dashboard.batch_figures import batch_history_figure
from ood_dashboard.figures import score_histogram_figure
from ood_dashboard.markup import escape
from ood_dashboard.session import persistent
from ood_dashboard.state import BATCH_RESULT, grid_key, page_key, part_key
from ood_dashboard.thumbnails import grid_thumbnail
from ood_dashboard.uploads import allowed_roots, check_folder, upload_source

FOLDER, UPLOAD = "Folder on this machine", "Upload a zip of images (or features)"
MAX_FLAGGED = 48  # flagged images shown, lowest scores first


@st.cache_resource(max_entries=4, show_spinner="Loading the reference…")
def load_reference(folder: str, digest: str) -> Reference:
    """The saved reference in ``folder`` (every file checked against its manifest), once per server
    for each content (``digest``: the SHA-256 of its manifest)."""
    ref = Reference.load(folder)
    if ref.digest != digest:
        raise ReferenceError(f"{folder} changed while it was being read; try again")
    return ref


def manifest_digest(folder: Path) -> str:
    """The reference's digest (the SHA-256 of its ``manifest.json``), read without loading it."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise ReferenceError(f"{manifest} is missing: {folder} is not a saved reference (save one with "
                             "`ood-explorer fit SOURCE --save REF/`)")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()


st.title("Batches")
st.write("Check a new batch of images against a saved reference (`ood-explorer fit SOURCE --save REF/`): each image "
         "is scored with the reference's frozen scorers, and the share flagged is tested against what a batch of "
         "in-distribution images of that size flags. The alarm means: this many flagged would be rare (p below "
         "alpha) if the batch were like the reference's images.")
keep = {name: persistent(page_key("batches", name), value)
        for name, value in {"reference": "", "kind": FOLDER, "folder": "", "name": "", "alpha": 0.01}.items()}
roots, origin = allowed_roots()
st.caption(f"Folders this dashboard may read: {', '.join(f'`{r}`' for r in roots)} ({escape(origin)}).")

# ---- the reference
ref_text = st.text_input("Reference folder", key=page_key("batches", "reference"), on_change=keep["reference"],
                         placeholder="/path/to/REF")
if not ref_text.strip():
    st.info("Type the path of a reference folder saved by `ood-explorer fit SOURCE --save REF/`.")
    st.stop()
try:
    ref_folder = check_folder(ref_text)
    digest = manifest_digest(ref_folder)
    ref = load_reference(str(ref_folder), digest)
except (ValueError, OSError) as exc:
    st.error(f"Cannot use this reference: {escape(str(exc))}")
    st.stop()
embedding = ref.embed_config
st.caption(f"{ref.n_fit:,} fit images" + (f" · {escape(embedding['model'])} at {embedding['image_size']} px"
                                            + (f" ({escape(str(ref.backend))})" if ref.backend != "none" else "")
                                            if embedding else " · precomputed features")
           + f" · threshold at the {ref.percentile:g}th percentile · digest `{digest[:12]}`")

# ---- the batch
c1, c2 = st.columns([2, 1])
kind = c1.radio("Batch", (FOLDER, UPLOAD), key=page_key("batches", "kind"), on_change=keep["kind"], horizontal=True)
alpha = c2.number_input("Alpha (the alarm's significance level)", min_value=0.0001, max_value=0.5, step=0.005,
                        format="%.4f", key=page_key("batches", "alpha"), on_change=keep["alpha"])
spec, problem = None, None
if kind == FOLDER:
    text = st.text_input("Batch folder", key=page_key("batches", "folder"), on_change=keep["folder"],
                         placeholder="/path/to/new/images")
    if text.strip():
        try:
            spec = str(check_folder(text))
        except ValueError as exc:
            problem = f"Cannot use this folder: {escape(str(exc))}."
else:
    upload = st.file_uploader("Zip of images, or .npz / .npy of features", type=["zip", "npz", "npy"],
                              key=page_key("batches", "upload"))
    if upload is not None:
        try:
            spec = upload_source(upload.name, upload.getvalue(), (".zip", ".npz", ".npy"))
        except (ValueError, OSError) as exc:
            problem = f"Cannot use this upload: {escape(str(exc))}."
name = st.text_input("Batch name (optional)", key=page_key("batches", "name"), on_change=keep["name"],
                     placeholder="e.g. arrivals 2024-06-01")
if problem:
    st.error(problem)
if st.button("Check the batch", type="primary", disabled=spec is None, key=page_key("batches", "run")):
    bar = st.progress(0.0, text="Embedding the batch…")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done:,} of {total:,}")

    try:
        result = ref.check(spec, alpha=float(alpha), name=name.strip() or (upload.name if kind == UPLOAD else None),
                           progress=progress)
        st.session_state[BATCH_RESULT] = (str(ref_folder), digest, result)
    except (ValueError, OSError, RuntimeError) as exc:
        st.error(f"Cannot check this batch: {escape(str(exc))}")
    bar.empty()

# ---- the verdict
last = st.session_state.get(BATCH_RESULT)
result = last[2] if last is not None and last[:2] == (str(ref_folder), digest) else None
if result is not None:
    st.subheader(f"Batch: {escape(result.name)}")
    verdict = (f"p = {result.p_value:.3g} (smallest scorer p-value × {len(result.tests)}) "
               f"{'<' if result.alarm else '≥'} alpha = {result.alpha:g}")
    if result.alarm:
        st.error(f"**Alarm**: more images flagged than in-distribution batches of {result.n:,} flag; {verdict}.",
                 icon=":material/notifications_active:")
    else:
        st.success(f"**No alarm**: the flagged share is what in-distribution batches of {result.n:,} flag; "
                   f"{verdict}.", icon=":material/check_circle:")
    if result.skipped:
        st.caption(f"{len(result.skipped):,} file(s) could not be read and were skipped: "
                   + escape(", ".join(Path(p).name for p, _ in result.skipped[:10])))
    cols = st.columns(len(result.tests))
    for col, (scorer, test) in zip(cols, result.tests.items()):
        lo, hi = test.interval
        col.metric(f"{ood_core.SCORERS[scorer].title}: flagged", f"{test.flagged:,} of {test.n:,} ({test.flagged_rate:.1%})",
                   help="Images scoring strictly below the reference's frozen threshold")
        col.caption(f"expected {test.expected_rate:.1%}; {result.level:.0%} of in-distribution batches of "
                    f"{test.n:,} flag {lo:.1%} to {hi:.1%}; p = {test.p_value:.3g}"
                    + (" (too many)" if test.alarm else ""))

    scorer = st.selectbox("Score", result.scorers, format_func=lambda name: ood_core.SCORERS[name].title, key=page_key("batches", "scorer"))
    st.plotly_chart(score_histogram_figure(
        ref.fit_scores(scorer), result.scores[scorer], ref.thresholds[scorer], percentile=ref.percentile,
        labels=("reference (fit)", "this batch")), key=page_key("batches", "histogram"),
        config={"displayModeBar": False})
    st.caption("Blue: the reference's fit images; orange: this batch. Red: the frozen threshold. "
               + ref.expected_flag_rate(scorer, result.n)["text"] + ".")

    flagged = np.flatnonzero(result.flagged[scorer])
    flagged = flagged[np.argsort(result.scores[scorer][flagged], kind="stable")]
    st.subheader(f"Flagged images ({len(flagged):,})")
    if len(flagged) == 0:
        st.caption("None.")
    elif result.items is None:
        st.dataframe({"id": [result.ids[i] for i in flagged], "score": result.scores[scorer][flagged]},
                     hide_index=True)
    else:
        st.caption("Lowest scores first. **View** opens an image large with the mark buttons; marks are kept with "
                   "the batch's images and record the reference and batch they were made against."
                   + (f" The {MAX_FLAGGED} lowest scores; the CSV below lists all {len(flagged):,}."
                      if len(flagged) > MAX_FLAGGED else ""))
        batch_marks = review.batch_marks(result)
        grid = st.container(key=grid_key(page_key("batches", "flagged")))
        shown = flagged[:MAX_FLAGGED]
        for start in range(0, len(shown), 8):
            for col, i in zip(grid.columns(8), shown[start:start + 8]):
                png, width = grid_thumbnail(result, int(i))  # the score pages' thumbnails, cached per batch and item
                predicted = f" → {escape(result.predicted[i])}" if result.predicted is not None else ""
                lines = [f"{escape(Path(result.paths[i]).name)} · {result.scores[scorer][i]:.3f}",
                         escape(result.labels[i]) + predicted, review.badge(batch_marks, result.ids[i])]
                col.image(png, width=width, output_format="PNG", caption="\n".join(line for line in lines if line))
                if col.button("View", key=part_key(page_key("batches", "flagged"), f"view_{i}"), type="tertiary",
                              icon=":material/open_in_full:",
                              help=f"{escape(result.ids[i])} large, with its scores and the mark buttons"):
                    review.open_batch_view(result, int(i))
        viewed = review.batch_view_position(result)
        if viewed is not None:
            review.batch_item_view(result, viewed, scorer)
    st.download_button("Download the scores (CSV)", result.to_csv(), file_name="batch.csv", mime="text/csv",
                       key=page_key("batches", "csv"))

# ---- every check of this reference
st.subheader("Every check of this reference")
history = read_history(ref_folder)
if not history:
    st.info("No batch has been checked against this reference yet.")
    st.stop()
if result is None:
    scorer = st.selectbox("Score", ref.scorers, format_func=lambda name: ood_core.SCORERS[name].title,
                          key=page_key("batches", "history_scorer"))
st.plotly_chart(batch_history_figure(history, scorer), key=page_key("batches", "history"),
                config={"displayModeBar": False})
st.caption("Each point: one check's flagged rate (red ×: alarm). Band: the rates 95% of in-distribution batches of "
           "that check's size fall in; dashed: the share of the reference's fit images flagged.")
st.dataframe({"check": [h["id"] for h in history], "checked at (UTC)": [h["checked_at"][:19] for h in history],
              "batch": [h["batch_name"] for h in history], "n": [h["n"] for h in history],
              "flagged (%)": [100 * (h.get(f"{scorer}_flagged_rate") or 0) for h in history],
              "p-value": [h["p_value"] for h in history], "alarm": [h["alarm"] for h in history]},
             hide_index=True, column_config={"flagged (%)": st.column_config.NumberColumn(format="%.1f")})
