"""The Data page and the score pages on bad input: what the user typed is refused with a message that
says what was wrong, names from uploads stay text, refused uploads are not kept (issues 9 and 13)."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest

from tests.test_app import (APP, ARRAYS, FOLDER, ZIP, app_cache, at, image_files, metrics)  # noqa: F401
from tests.test_cifar_download import fake, server  # noqa: F401
from ood_core import percentile_threshold
from ood_core.uploads import upload_dir
from ood_dashboard.markup import escape
from tests.conftest import markdown_text


def test_a_percentile_outside_0_to_100_is_refused_with_a_message(at):
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    fit = at.session_state["analysis"].fit_feature_scores
    for typed in (150.0, -5.0):
        at.number_input(key="feature_percentile_input").set_value(typed).run()
        assert not at.exception
        assert at.error[0].value == (f"The percentile must be a number from 0 to 100; got {typed}. The threshold "
                                     "stays at the 5th percentile.")
        assert at.session_state["feature_threshold"] == percentile_threshold(fit, 5.0)
        assert at.number_input(key="feature_percentile_input").value == 5.0  # the input shows what is in force
    at.number_input(key="feature_percentile_input").set_value(12.5).run()
    assert not at.error and at.session_state["feature_threshold"] == percentile_threshold(fit, 12.5)


def test_an_upload_name_with_markup_is_shown_as_text(at):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in image_files().items():
            zf.writestr(name, data)
    name = "<b>x</b>[click](http://example.com)_:red[y].zip"
    at.radio(key="data_source_choice").set_value(ZIP).run()
    at.file_uploader(key="data_zip_upload").set_value((name, buf.getvalue(), "application/zip")).run()
    at.button(key="data_run").click().run()
    source = at.session_state["analysis"].source
    assert name in source
    shown = [m.value for m in at.markdown if "example.com" in markdown_text(m.value)]
    assert len(shown) == 1 and shown[0].startswith(f"**{escape(source)}**")
    assert "\\<b\\>" in shown[0] and "\\[click\\]" in shown[0]
    assert escape(source) in at.sidebar.caption[0].value


def test_a_refused_upload_is_not_kept(at):
    before = set(upload_dir().glob("*")) if upload_dir().exists() else set()
    at.radio(key="data_source_choice").set_value(ZIP).run()
    at.file_uploader(key="data_zip_upload").set_value(("broken.zip", b"PK\x03\x04 not really a zip",
                                                       "application/zip")).run()
    assert at.error[-1].value.startswith("Cannot read this dataset: ") and "broken.zip" in markdown_text(at.error[-1].value)
    assert at.button(key="data_run").disabled
    assert set(upload_dir().glob("*")) == before


def test_an_upload_into_an_unwritable_cache_says_so(at, tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OOD_CACHE_DIR", str(blocker / "cache"))  # cannot be created: its parent is a file
    buf = io.BytesIO()
    np.savez(buf, features=np.random.default_rng(0).normal(size=(10, 4)))
    at.radio(key="data_source_choice").set_value(ARRAYS).run()
    at.file_uploader(key="data_arrays_upload").set_value(("f.npz", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    assert at.error[0].value.startswith("Cannot use this upload: ") and "Not a directory" in at.error[0].value
    assert at.button(key="data_run").disabled


def test_the_allowed_folders_come_from_the_config_file(at, tmp_path, monkeypatch):
    images = tmp_path / "data" / "images"
    for name, data in image_files().items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(data)
    config = tmp_path / "config.toml"
    config.write_text(f'data_roots = ["{tmp_path / "data"}"]\n')
    monkeypatch.delenv("OOD_DATA_ROOTS", raising=False)
    monkeypatch.setenv("OOD_CONFIG", str(config))
    at.radio(key="data_source_choice").set_value(FOLDER).run()
    assert any(escape(f"data_roots in {config}") in c.value for c in at.caption)
    at.text_input(key="data_folder_path").set_value(str(images)).run()
    assert not at.error and not at.button(key="data_run").disabled
    monkeypatch.delenv("OOD_CONFIG")
    monkeypatch.chdir(tmp_path / "data")  # the default: only the folder the dashboard was started in
    at.text_input(key="data_folder_path").set_value(str(tmp_path)).run()
    assert "is outside the folders this dashboard may read" in at.error[0].value


def test_a_two_class_prediction_score_says_what_to_use_instead(at):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(30, 6)), rng.normal(size=(30, 6)) + 4, rng.normal(size=(10, 6)) - 6])
    buf = io.BytesIO()
    np.savez(buf, features=X, labels=np.r_[np.repeat([0, 1], 30), np.full(10, -1)],
             class_names=np.array(["cat", "dog"]), split=np.array(["train"] * 60 + ["test"] * 10))
    at.radio(key="data_source_choice").set_value(ARRAYS).run()
    at.file_uploader(key="data_arrays_upload").set_value(("two.npz", buf.getvalue(), "application/zip")).run()
    at.button(key="data_run").click().run()
    at.switch_page("ood_dashboard/views/prediction_scores.py").run()
    assert not at.exception
    assert at.warning[0].value.startswith("With only 2 classes the prediction score")
    assert "Use the feature score (KNN)" in at.warning[0].value
    assert "Threshold (score)" in metrics(at)


def test_the_download_button_fetches_cifar10_and_the_demo_becomes_runnable(at, fake, server):
    at.radio(key="data_source_choice").set_value("CIFAR-10 demo split").run()
    at.button(key="data_cifar_download").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert server.requests == 1
    assert any("CIFAR-10 found at" in c.value for c in at.caption)
    assert not at.button(key="data_run").disabled


def test_the_download_button_offline_says_what_to_do_instead(at, fake, monkeypatch):
    import socket

    from torchvision.datasets import CIFAR10

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    at.radio(key="data_source_choice").set_value("CIFAR-10 demo split").run()
    at.button(key="data_cifar_download").click().run()
    assert not at.exception
    message = at.error[0].value
    assert message.startswith("Could not download CIFAR-10: ") and "OOD\\_CIFAR10" in message
    assert at.button(key="data_run").disabled


def test_a_link_carries_the_dataset_and_the_percentile(at):
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert at.query_params["source"] == "digits" and at.query_params["p"] == "5"
    at.number_input(key="feature_percentile_input").set_value(7.5).run()
    assert at.query_params["p"] == "7.5"  # changing the percentile updates the link


def test_opening_a_link_with_a_percentile_shows_it(app_cache):
    shared = AppTest.from_file(str(APP), default_timeout=240)
    shared.query_params["source"] = "digits"
    shared.query_params["p"] = "12.5"
    shared.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert not shared.exception
    assert shared.number_input(key="feature_percentile_input").value == 12.5
    fit = shared.session_state["analysis"].fit_feature_scores
    assert shared.session_state["feature_threshold"] == percentile_threshold(fit, 12.5)


def test_a_links_bad_percentile_is_echoed_as_typed(app_cache):
    """Issue 18.10: ``?p=<script>`` is said back as ``<script>``, without the backslashes a repr of
    the escaped text showed."""
    shared = AppTest.from_file(str(APP), default_timeout=240)
    shared.query_params["source"] = "digits"
    shared.query_params["p"] = "<script>"
    shared.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert not shared.exception
    (warning,) = [w.value for w in shared.warning if "link's percentile" in w.value]
    assert markdown_text(warning) == ("The link's percentile “<script>” is not a number from 0 to 100; the "
                                      "threshold stays where it was.")


def test_a_link_to_a_folder_outside_the_allowed_roots_falls_back_to_the_digits(app_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_DATA_ROOTS", str(tmp_path / "allowed"))
    shared = AppTest.from_file(str(APP), default_timeout=240)
    shared.query_params["source"] = "/etc"
    shared.run()
    assert not shared.exception
    assert markdown_text(shared.warning[0].value).startswith("This link's dataset cannot be opened here (/etc is outside the folders")
    assert shared.session_state["analysis"].source.startswith("scikit-learn digits")


@pytest.fixture
def clean_marks(at):
    """The marks this test makes on the digits are removed afterwards (other tests read captions)."""
    import ood_core

    analysis = at.session_state["analysis"]
    yield analysis
    store = ood_core.ReviewStore()
    store.clear(ood_core.dataset_key(analysis), list(store.marks(ood_core.dataset_key(analysis))))


def test_the_table_lists_every_item_and_marks_a_selection(at, clean_marks):
    import ood_core

    analysis = clean_marks
    at.switch_page("ood_dashboard/views/table.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value  # a page of 1,000 rows, most atypical first
    assert len(table) == 1000 and list(table["feature score"]) == sorted(table["feature score"])
    assert "1,797 items; showing rows 1 to 1,000" in [c.value for c in at.caption]
    at.number_input(key="table_page_all_False_all").set_value(2).run()
    assert len(at.dataframe[0].value) == 797 and at.dataframe[0].value["feature score"].min() >= table["feature score"].max()
    at.toggle(key="table_flagged").set_value(True).run()
    flagged = at.dataframe[0].value
    assert len(flagged) == int((analysis.item_scores("feature") < at.session_state["feature_threshold"]).sum())
    at.session_state["table_rows"] = {"selection": {"rows": [0, 1, 2], "columns": [], "cells": []}}
    at.run()
    at.button(key="table_selection_bulk_outlier").click().run()
    marks = ood_core.ReviewStore().marks(ood_core.dataset_key(analysis))
    assert set(marks) == {analysis.ids[p] for p in flagged["position"][:3]}
    assert {m.verdict for m in marks.values()} == {"outlier"}
    at.selectbox(key="table_review").set_value("outlier").run()
    assert list(at.dataframe[0].value["review"]) == ["outlier"] * 3


def test_marks_estimate_the_precision_and_filter_the_grids(at, clean_marks):
    import ood_core

    analysis = clean_marks
    flagged = ood_core.flagged_positions(analysis, "feature", ood_core.percentile_threshold(
        analysis.fit_feature_scores, 5.0))
    store = ood_core.ReviewStore()
    store.mark(ood_core.dataset_key(analysis), [analysis.ids[p] for p in flagged[:8]], "outlier")
    store.mark(ood_core.dataset_key(analysis), [analysis.ids[p] for p in flagged[8:10]], "fine")
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert metrics(at)["Flagged test images reviewed"] == f"10 of {len(flagged):,}"
    assert metrics(at)["Flagged, marked outlier"] == "8" and metrics(at)["Flagged, marked fine"] == "2"
    at.segmented_control(key="feature_review_filter").set_value("fine").run()
    test_grid = [c for image in at.image for c in image.captions if "✓ fine" in c]
    assert len(test_grid) == 2
