"""The dashboard through ``streamlit.testing.v1.AppTest``: every page on the digits default, the
threshold (counts, grids, export), bad input, folder roots, and that moving the threshold never
recomputes anything heavy.

The run store is a ``st.cache_resource`` shared by the whole test process, and every test uses
one embedding cache folder (``app_cache``), so only the first AppTest pays for embedding digits.
"""
from __future__ import annotations

import csv
import io
import json
import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import ood_core._analyze  # noqa: E402
from ood_core import FeatureScorer, percentile_of, percentile_threshold, rank_outliers  # noqa: E402
from ood_core.embedder import Embedder  # noqa: E402
from ood_dashboard.navigation import PAGES as NAVIGATION  # noqa: E402
from ood_dashboard.markup import escape  # noqa: E402
from tests.conftest import markdown_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
TIMEOUT = 240  # seconds per script run: the very first one embeds digits on 2 cores
PAGES = [f"ood_dashboard/views/{spec.name}.py" for spec in NAVIGATION]  # relative to app.py, for switch_page
ZIP, FOLDER, ARRAYS = "Upload a zip of images", "Image folder on this machine", "Upload precomputed features"


@pytest.fixture(scope="session")
def app_cache(tmp_path_factory):
    """One embedding cache for every AppTest: $OOD_CACHE_DIR when the caller set one (CI points it
    into the checkout), else a folder of this test session (the browser test uses the same one);
    never the user's own cache."""
    import os

    with pytest.MonkeyPatch.context() as mp:
        path = os.environ.get("OOD_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "ood_app_cache")
        mp.setenv("OOD_CACHE_DIR", path)
        yield Path(path)


def new_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def at(app_cache) -> AppTest:
    """A fresh session on the digits default (from the run store after the first test)."""
    return new_app()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def expected_counts(fit: np.ndarray, query: np.ndarray, threshold: float) -> dict[str, str]:
    nf, nq = int(np.sum(fit < threshold)), int(np.sum(query < threshold))
    return {"Threshold (score)": f"{threshold:.4f}",
            "Train (fit) flagged": f"{nf:,} ({100 * nf / len(fit):.1f}%)",
            "Test (query) flagged": f"{nq:,} ({100 * nq / len(query):.1f}%)"}


def expected_captions(analysis, which: str, n: int, threshold: float) -> list[str]:
    """Captions of the train grid then the test grid, from ood_core directly."""
    from ood_dashboard.grid import caption

    out = []
    for index, scores in ((analysis.fit_index, analysis.fit_feature_scores),
                          (analysis.query_index, analysis.query_feature_scores)):
        ranked = rank_outliers(scores, threshold=threshold, n=n)[which]
        out += [caption(analysis, int(index[r]), float(scores[r])) for r in ranked]
    return out


# ----------------------------------------------------------------------------- pages
def test_the_app_and_every_page_run_on_the_digits_default(at):
    assert {"ood_dashboard/views/data.py", "ood_dashboard/views/feature_scores.py", "ood_dashboard/views/prediction_scores.py"} <= set(PAGES)
    assert [t.value for t in at.title] == ["Data & model"]
    assert at.session_state["analysis"].source.startswith("scikit-learn digits (450 fit / 1,347 query")
    assert metrics(at)["Train (fit) items"] == "450"
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert at.title, page
        assert at.sidebar.caption[0].value.startswith("**Loaded:** " + escape("scikit-learn digits")), page  # app.py ran
    at.switch_page("ood_dashboard/views/prediction_scores.py").run()
    assert at.title[0].value == "Prediction score (pred_probs)"
    analysis = at.session_state["analysis"]
    threshold = percentile_threshold(analysis.fit_pred_scores, 5.0)
    nq = int(np.sum(analysis.query_pred_scores < threshold))
    assert metrics(at)["Test (query) flagged"] == f"{nq:,} ({100 * nq / 1347:.1f}%)"
    assert metrics(at)["AUROC"] != ""


def test_changing_the_percentile_changes_the_counts_and_the_borderline_grid(at):
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    analysis = at.session_state["analysis"]
    fit, query = analysis.fit_feature_scores, analysis.query_feature_scores
    t5 = percentile_threshold(fit, 5.0)
    assert at.number_input(key="feature_percentile_input").value == 5.0
    assert {k: metrics(at)[k] for k in expected_counts(fit, query, t5)} == expected_counts(fit, query, t5)
    assert at.session_state["feature_threshold"] == t5

    at.segmented_control(key="feature_listing").set_value("Borderline").run()
    before = captions(at)
    assert before == expected_captions(analysis, "borderline", 16, t5)
    assert len(before) == 32

    at.number_input(key="feature_percentile_input").set_value(25.0).run()
    assert not at.exception
    t25 = percentile_threshold(fit, 25.0)
    assert at.session_state["feature_threshold"] == t25
    after_metrics = metrics(at)
    assert {k: after_metrics[k] for k in expected_counts(fit, query, t25)} == expected_counts(fit, query, t25)
    assert int(after_metrics["Train (fit) flagged"].split()[0]) > int(np.sum(fit < t5))
    after = captions(at)
    assert after == expected_captions(analysis, "borderline", 16, t25)
    assert set(after).isdisjoint(before)  # every borderline image sits just below the new line

    at.number_input(key="feature_grid_size").set_value(8).run()
    assert captions(at) == expected_captions(analysis, "borderline", 8, t25)


def test_the_threshold_survives_a_visit_to_another_page(at):
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    at.number_input(key="feature_percentile_input").set_value(12.5).run()
    at.switch_page("ood_dashboard/views/data.py").run()
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    analysis = at.session_state["analysis"]
    assert at.number_input(key="feature_percentile_input").value == 12.5
    threshold = percentile_threshold(analysis.fit_feature_scores, 12.5)
    assert metrics(at)["Threshold (score)"] == f"{threshold:.4f}"


def test_a_threshold_set_by_a_drag_shows_with_its_percentile(at):
    """The drag callback stores a threshold value and its percentile; the page follows both (the
    browser test drags for real)."""
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    fit = at.session_state["analysis"].fit_feature_scores
    x = float(np.sort(fit)[89])  # 89 train scores lie strictly below it (the scores are distinct)
    at.session_state["feature_threshold"] = x
    at.session_state["feature_percentile"] = round(percentile_of(fit, x), 2)
    at.run()
    assert at.number_input(key="feature_percentile_input").value == 19.78
    assert metrics(at)["Train (fit) flagged"] == "89 (19.8%)"
    assert metrics(at)["Threshold (score)"] == f"{x:.4f}"


def test_scorer_settings_refit_only_their_scorer_and_keep_the_percentile(at):
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    at.number_input(key="feature_percentile_input").set_value(10.0).run()
    before = at.session_state["analysis"]
    at.number_input(key=f"feature_k:{before.run_id}").set_value(3).run()  # scorer widgets are keyed by the run
    after = at.session_state["analysis"]
    assert (after.score_config.k, after.feature_scorer.k_) == (3, 3)
    assert after.features is before.features and after.fit_pred_probs is before.fit_pred_probs
    assert after.fit_pred_scores is before.fit_pred_scores  # the other scorer is untouched
    threshold = percentile_threshold(after.fit_feature_scores, 10.0)  # same percentile, new scores
    assert at.session_state["feature_threshold"] == threshold
    assert metrics(at)["Threshold (score)"] == f"{threshold:.4f}"

    at.switch_page("ood_dashboard/views/prediction_scores.py").run()
    at.selectbox(key=f"prediction_method:{after.run_id}").set_value("least_confidence").run()
    assert not at.exception
    final = at.session_state["analysis"]
    assert final.score_config.method == "least_confidence" and final.fit_feature_scores is after.fit_feature_scores
    assert at.session_state["prediction_threshold"] == percentile_threshold(final.fit_pred_scores, 5.0)


def test_the_neighbour_search_can_be_approximate_and_the_page_says_so(at):
    pytest.importorskip("faiss")
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    before = at.session_state["analysis"]
    assert any("neighbour search: exact" in c.value for c in at.caption)
    at.selectbox(key=f"feature_index:{before.run_id}").set_value("approximate").run()
    after = at.session_state["analysis"]
    assert not at.exception and after.score_config.index == "approximate"
    assert after.feature_scorer.index_["kind"] == "approximate"
    assert any("neighbour search: approximate (faiss IVF" in c.value for c in at.caption)
    assert any("neighbour search was approximate (faiss IVF" in w.value for w in at.warning)  # the caveat above the threshold
    assert after.fit_pred_scores is before.fit_pred_scores  # the other scorer is untouched


def test_approximate_without_faiss_is_an_error_not_a_crash(at, monkeypatch):
    import ood_core

    monkeypatch.setattr(ood_core, "faiss_available", lambda: False, raising=False)
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    before = at.session_state["analysis"]
    at.selectbox(key=f"feature_index:{before.run_id}").set_value("approximate").run()
    assert not at.exception
    assert any("needs faiss" in e.value and "ood-explorer[scale]" in e.value for e in at.error)
    assert at.session_state["analysis"].feature_scorer.index_["kind"] == "exact"


def test_export_payloads_parse_and_match_the_scores(at):
    from ood_dashboard.score_page import export_payloads

    for page, scorer in (("ood_dashboard/views/feature_scores.py", "feature"), ("ood_dashboard/views/prediction_scores.py", "prediction")):
        at.switch_page(page).run()
        labels = [b.label for b in at.get("download_button")]
        assert labels == ["Scores (CSV)", "Threshold card (JSON)", "Marks (CSV)"]  # the marks: issue 10
        analysis = at.session_state["analysis"]
        fit, query = analysis.scores(scorer)
        threshold = at.session_state[f"{scorer}_threshold"]
        csv_text, card_text = export_payloads(analysis, scorer, threshold)

        rows = list(csv.DictReader(io.StringIO(csv_text)))
        assert len(rows) == len(fit) + len(query) == 1797
        assert [r["set"] for r in rows] == ["fit"] * len(fit) + ["query"] * len(query)
        ids = [analysis.ids[p] for p in np.concatenate([analysis.fit_index, analysis.query_index])]
        assert [r["id"] for r in rows] == ids
        scores = np.array([float(r[f"{scorer}_score"]) for r in rows])
        np.testing.assert_array_equal(scores, np.concatenate([fit, query]))  # full precision
        assert [r[f"{scorer}_flagged"] for r in rows] == [str(s < threshold) for s in scores]
        assert {r["is_ood"] for r in rows[len(fit):]} == {"True", "False"}

        card = json.loads(card_text)
        assert card["scorer"] == scorer and card["threshold"] == threshold
        assert card["percentile"] == pytest.approx(percentile_of(fit, threshold))
        # a scorer scores every item: nothing unscored (issue types may leave some, tests/test_unscored.py)
        assert card["fit"] == {"flagged": int(np.sum(fit < threshold)), "total": 450, "unscored": 0}
        assert card["query"] == {"flagged": int(np.sum(query < threshold)), "total": 1347, "unscored": 0}
        assert card["embedding"]["model"] == analysis.embed_config["model"]  # the model the run used
        assert card["metrics"]["tp"] + card["metrics"]["fp"] == card["query"]["flagged"]
    assert card["scorer_params"]["method"] == "entropy"


def test_moving_the_threshold_never_recomputes_embeddings_neighbours_or_pred_probs(at, monkeypatch):
    at.switch_page("ood_dashboard/views/feature_scores.py").run()

    def recomputed(*args, **kwargs):
        raise AssertionError("a threshold change recomputed embeddings, neighbours or pred_probs")

    monkeypatch.setattr(FeatureScorer, "fit", recomputed)
    monkeypatch.setattr(FeatureScorer, "score", recomputed)
    monkeypatch.setattr(FeatureScorer, "kneighbors", recomputed)
    monkeypatch.setattr(ood_core._analyze, "out_of_sample_pred_probs", recomputed)
    monkeypatch.setattr(Embedder, "embed", recomputed)
    before = metrics(at)["Test (query) flagged"]
    at.number_input(key="feature_percentile_input").set_value(30.0).run()
    at.segmented_control(key="feature_listing").set_value("Most typical").run()
    at.number_input(key="feature_grid_size").set_value(24).run()
    assert not at.exception, [e.value for e in at.exception]
    assert metrics(at)["Test (query) flagged"] != before
    at.switch_page("ood_dashboard/views/prediction_scores.py").run()
    at.number_input(key="prediction_percentile_input").set_value(10.0).run()
    at.switch_page("ood_dashboard/views/data.py").run()
    assert not at.exception, [e.value for e in at.exception]


def test_why_button_opens_the_item_on_the_neighbours_page(at):
    if not (REPO / "ood_dashboard" / "views" / "neighbours.py").is_file() or "ood_dashboard/views/neighbours.py" not in PAGES:
        pytest.skip("the neighbours page is not part of the app")
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    analysis = at.session_state["analysis"]
    top = rank_outliers(analysis.query_feature_scores, n=16)["top"]
    position = int(analysis.query_index[top[0]])
    at.button(key=f"feature_query_why_{position}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value != "Feature score (KNN)"  # we left the score page...
    assert "explain_position" not in at.session_state  # ...and the neighbours page took the item
    assert any(f"#{position}" in c or analysis.ids[position] in markdown_text(c) for c in captions(at))


# ----------------------------------------------------------------------------- bad input
def noisy_png(seed: int, size=(12, 10)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


BAD_FILES = {"notes.txt": b"not an image", "blue/broken.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 40}


def image_files() -> dict[str, bytes]:
    files = {f"{cls}/{i}.png": noisy_png(10 * c + i) for c, cls in enumerate(("red", "blue")) for i in range(4)}
    return {**files, **BAD_FILES}


def assert_skipped_listed_and_rest_scored(at: AppTest, n_valid: int, skipped: list[str], what: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    warning = at.warning[0].value
    assert warning.startswith(f"{len(skipped)} {what}")
    assert "Every other item was scored." in warning
    table = at.dataframe[0].value
    assert sorted(table["item"]) == sorted(skipped)
    assert all(reason for reason in table["reason"])
    analysis = at.session_state["analysis"]
    assert len(analysis.ids) == n_valid and np.isfinite(analysis.fit_feature_scores).all()
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert not at.exception, [e.value for e in at.exception]
    fit, query = analysis.fit_feature_scores, analysis.query_feature_scores
    expected = expected_counts(fit, query, percentile_threshold(fit, 5.0))
    assert metrics(at)["Train (fit) flagged"] == expected["Train (fit) flagged"]


def test_a_zip_with_a_non_image_and_a_corrupt_jpeg_lists_them_and_scores_the_rest(at):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in image_files().items():
            zf.writestr(name, data)
    at.radio(key="data_source_choice").set_value(ZIP).run()
    at.file_uploader(key="data_zip_upload").set_value(("my images.zip", buf.getvalue(), "application/zip")).run()
    assert not at.button(key="data_run").disabled
    at.button(key="data_run").click().run()
    assert "my images.zip" in at.session_state["analysis"].source
    assert "my images.zip" in markdown_text(at.sidebar.caption[0].value)  # the whole app shows the new run
    assert_skipped_listed_and_rest_scored(at, 8, sorted(BAD_FILES), "file(s) were skipped")


@pytest.mark.filterwarnings("ignore:load_arrays. dropped 1 of 40 rows")
def test_a_features_file_with_a_nan_row_lists_it_and_scores_the_rest(at):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 8))
    features[7, 3] = np.nan
    buf = io.BytesIO()
    np.savez(buf, features=features, labels=np.arange(40) % 2, ids=np.array([f"row{i:02d}" for i in range(40)]),
             split=np.array(["train"] * 30 + ["test"] * 10))
    at.radio(key="data_source_choice").set_value(ARRAYS).run()
    at.file_uploader(key="data_arrays_upload").set_value(("features.npz", buf.getvalue(), "application/zip")).run()
    at.button(key="data_run").click().run()
    assert at.dataframe[0].value["reason"].tolist() == ["features row has NaN/inf"]
    assert_skipped_listed_and_rest_scored(at, 39, ["row07"], "row(s) were left out")
    assert at.session_state["analysis"].items is None  # grids fall back to tables: no pixels


def test_an_image_folder_outside_the_allowed_roots_is_refused(at, tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    for name, data in image_files().items():
        (allowed / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (allowed / "images" / name).write_bytes(data)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.setenv("OOD_DATA_ROOTS", str(allowed))
    at.radio(key="data_source_choice").set_value(FOLDER).run()
    at.text_input(key="data_folder_path").set_value(str(outside)).run()
    from ood_dashboard.markup import escape
    from ood_dashboard.uploads import config_file

    assert at.error[0].value == "Cannot use this folder: " + escape(  # which folders, from where, how to allow
        f"{outside} is outside the folders this dashboard may read ({allowed}, from the OOD_DATA_ROOTS environment "
        f"variable); to allow it, start the dashboard with OOD_DATA_ROOTS={outside}:... (paths separated by ':'), "
        f"or add it to data_roots = [...] in {config_file()}") + "."
    assert at.button(key="data_run").disabled
    at.text_input(key="data_folder_path").set_value(str(allowed / "images" / ".." / "..")).run()
    assert "is outside the folders" in at.error[0].value  # `..` is resolved before the check
    at.text_input(key="data_folder_path").set_value(str(allowed / "images")).run()
    assert not at.error and not at.button(key="data_run").disabled
    at.button(key="data_run").click().run()
    assert_skipped_listed_and_rest_scored(at, 8, sorted(BAD_FILES), "file(s) were skipped")


def test_the_cifar_demo_without_a_copy_offers_the_download_and_the_path(at, monkeypatch, tmp_path):
    monkeypatch.delenv("OOD_CIFAR10", raising=False)
    monkeypatch.setenv("OOD_DATA_DIR", str(tmp_path))
    at.radio(key="data_source_choice").set_value("CIFAR-10 demo split").run()
    assert at.error[0].value == "CIFAR-10 is not on this machine yet: download it or set OOD_CIFAR10 (see above)."
    assert "Download torchvision's copy" in at.info[0].value and "`OOD_CIFAR10`" in at.info[0].value
    assert at.button(key="data_run").disabled and not at.button(key="data_cifar_download").disabled


def test_a_run_that_finishes_while_the_user_is_elsewhere_is_selected(at):
    from ood_dashboard.runs import RunSettings
    from ood_dashboard.state import PENDING_RUN

    at.radio(key="data_source_choice").set_value(ARRAYS).run()
    buf = io.BytesIO()
    np.savez(buf, features=np.random.default_rng(1).normal(size=(12, 4)))
    at.file_uploader(key="data_arrays_upload").set_value(("small.npz", buf.getvalue(), "application/zip")).run()
    at.button(key="data_run").click().run()
    assert at.session_state["analysis"].source.startswith("precomputed arrays small.npz (12 rows")
    at.session_state[PENDING_RUN] = RunSettings()  # the digits run, finished (in the run store)
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert at.session_state["analysis"].source.startswith("scikit-learn digits")
    assert PENDING_RUN not in at.session_state
    from ood_dashboard.markup import escape

    assert [t.value for t in at.toast] == [f"Loaded {escape(at.session_state['analysis'].source)}"]


# ----------------------------------------------------------------------------- state helpers
def test_upload_source_stores_by_content_hash_and_checks_the_extension(app_cache):
    import hashlib

    from ood_core.uploads import upload_dir
    from ood_dashboard.uploads import upload_source

    path = Path(upload_source("../../evil name.ZIP", b"PK fake zip"))
    assert path == upload_dir() / (hashlib.sha256(b"PK fake zip").hexdigest() + ".zip")
    assert path.read_bytes() == b"PK fake zip" and path.parent == app_cache / "uploads"
    assert upload_source("other.zip", b"PK fake zip") == str(path)
    with pytest.raises(ValueError, match=r"'x.exe' is not a .zip / .npz / .npy file"):
        upload_source("x.exe", b"MZ")
    with pytest.raises(ValueError, match=r"'f.npz' is not a .zip file"):
        upload_source("f.npz", b"PK", (".zip",))
    with pytest.raises(ValueError, match=r"'e.npy' is empty"):
        upload_source("e.npy", b"")


def test_run_store_computes_a_run_once_keeps_the_latest_and_retries_failures():
    from ood_dashboard.runs import RunSettings, RunStore

    store, calls, gate = RunStore(max_runs=2), [], threading.Event()

    def compute(settings, progress):
        calls.append(settings.source)
        progress("embed", 3, 4)
        gate.wait(10)
        if settings.source == "bad":
            raise ValueError("cannot read")
        return f"analysis of {settings.source}"

    a = store.start(RunSettings(source="a"), compute)
    assert store.start(RunSettings(source="a"), compute) is a  # a second session joins the running job
    assert store.get(RunSettings(source="a")) is None and store.running(RunSettings(source="a"))
    gate.set()
    assert a.future.result(timeout=10) == "analysis of a" and not store.running(RunSettings(source="a"))
    assert (a.fraction, a.text) == (0.75, "Embedding images: 3 / 4")
    bad = store.start(RunSettings(source="bad"), compute)
    assert isinstance(bad.future.exception(timeout=10), ValueError)
    assert store.start(RunSettings(source="bad"), compute) is not bad  # a failure is not kept
    for name in ("b", "c"):
        assert store.start(RunSettings(source=name), compute).future.result(timeout=10)
    assert calls.count("a") == 1
    assert store.get(RunSettings(source="a")) is None  # least recently used of three, max 2
    assert store.get(RunSettings(source="c")) == "analysis of c"
