"""The Batches page (issue 20) through ``streamlit.testing.v1.AppTest``: a saved reference of small
coloured images, a clean batch (no alarm) and a batch of 40% odd colours (alarm), the flagged images,
the history over time, and the refusals (outside the allowed roots, a damaged reference)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ood_core.reference import Reference, flag_rate_interval  # noqa: E402
from ood_dashboard.batch_figures import batch_history_figure  # noqa: E402
from tests.conftest import markdown_text  # noqa: E402
from ood_dashboard.markup import escape  # noqa: E402
from ood_dashboard.state import BATCH_RESULT, page_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
PAGE = "ood_dashboard/views/batches.py"
COLOURS = {"red": (200, 40, 40), "blue": (40, 40, 200), "green": (40, 200, 40)}


def write_images(folder: Path, counts: dict[str, int], seed: int) -> Path:
    """``counts[colour]`` 8x8 PNGs of that colour with noise, in a folder per colour."""
    rng = np.random.default_rng(seed)
    for colour, n in counts.items():
        (folder / colour).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 25, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / colour / f"{colour}_{seed}_{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", os.environ.get("OOD_CACHE_DIR") or str(root / "cache"))
        fit = write_images(root / "fit", {"red": 60, "blue": 60}, seed=0)
        Reference.fit(fit, model="pixels", percentile=5).save(root / "ref")
    write_images(root / "clean", {"red": 30, "blue": 30}, seed=1)
    write_images(root / "odd", {"red": 18, "blue": 18, "green": 24}, seed=2)
    return root


@pytest.fixture
def at(data, monkeypatch) -> AppTest:
    monkeypatch.setenv("OOD_DATA_ROOTS", str(data))
    monkeypatch.setenv("OOD_CACHE_DIR", os.environ.get("OOD_CACHE_DIR") or str(data / "cache"))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def check(at: AppTest, batch: Path, name: str) -> None:
    at.text_input(key=page_key("batches", "folder")).input(str(batch)).run()
    at.text_input(key=page_key("batches", "name")).input(name).run()
    at.button(key=page_key("batches", "run")).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_clean_then_odd_batch_with_the_verdict_the_flagged_images_and_the_history(at, data):
    ref_folder = data / "ref"
    shutil.rmtree(ref_folder / "history.sqlite", ignore_errors=True)
    assert at.title[0].value == "Batches"
    assert "Type the path of a reference folder" in at.info[0].value
    at.text_input(key=page_key("batches", "reference")).input(str(ref_folder)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "120 fit images · pixels" in at.caption[1].value
    assert "No batch has been checked against this reference yet." in [i.value for i in at.info]

    check(at, data / "clean", "clean")
    clean = at.session_state[BATCH_RESULT][2]
    assert clean.n == 60 and not clean.alarm
    assert at.success[0].value.startswith("**No alarm**: the flagged share is what in-distribution batches of 60 flag")
    assert not at.error
    feature = clean.tests["feature"]
    below = Reference.load(ref_folder).settings["feature"]["below"]
    assert feature.interval == flag_rate_interval(120, 5, 60, below=below)
    metric = next(m for m in at.metric if m.label.endswith(": flagged"))
    assert metric.value == f"{feature.flagged} of 60 ({feature.flagged / 60:.1%})"

    check(at, data / "odd", "40% green")
    odd = at.session_state[BATCH_RESULT][2]
    assert odd.n == 60 and odd.alarm and odd.tests["feature"].flagged >= 20
    assert at.error[0].value.startswith("**Alarm**: more images flagged than in-distribution batches of 60 flag; p = ")
    assert markdown_text(at.subheader[0].value) == "Batch: 40% green"
    flagged = int(odd.flagged["feature"].sum())
    assert f"Flagged images ({flagged})" in [s.value for s in at.subheader]
    images = at.get("image")
    captions = [img.proto.imgs[0].caption for img in images]
    assert len(captions) == flagged and sum("green" in c for c in captions) >= 20
    assert all(r"\_" in c for c in captions)  # the file names' underscores escaped, not read as emphasis
    # the expected-rate sentence under the histogram, for this batch's size
    sentence = Reference.load(ref_folder).expected_flag_rate("feature", 60)["text"]
    assert any(sentence in c.value for c in at.caption)
    # both checks over time, in the history table and its chart
    table = at.dataframe[-1].value
    assert list(table["batch"]) == ["clean", "40% green"] and list(table["alarm"]) == [False, True]
    assert len(at.get("plotly_chart")) == 2


def test_the_history_figure_draws_rates_band_and_alarms():
    rows = [{"id": 1, "checked_at": "2024-06-01T10:00:00", "batch_name": "<b>a</b>", "n": 100, "alarm": False,
             "p_value": 0.5, "feature_flagged_rate": 0.04, "feature_expected_rate": 0.05,
             "feature_interval": [0.01, 0.1]},
            {"id": 2, "checked_at": "2024-06-02T10:00:00", "batch_name": "b", "n": 200, "alarm": True,
             "p_value": 1e-6, "feature_flagged_rate": 0.3, "feature_expected_rate": 0.05,
             "feature_interval": [0.02, 0.085]}]
    fig = batch_history_figure(rows, "feature")
    band_hi, band_lo, expected, rate = fig.data
    assert list(band_hi.y) == [10.0, 8.5] and list(band_lo.y) == [1.0, 2.0] and band_lo.fill == "tonexty"
    assert list(expected.y) == [5.0, 5.0]
    assert list(rate.y) == [4.0, 30.0] and list(rate.marker.symbol) == ["circle", "x"]
    assert rate.customdata[0][0] == "&lt;b&gt;a&lt;/b&gt;"  # a batch name is text, not plotly markup
    assert list(rate.x) == ["#1 2024-06-01 10:00", "#2 2024-06-02 10:00"]
    assert batch_history_figure(rows, "prediction").data[3].y == ()


def test_a_reference_outside_the_roots_or_damaged_is_refused_by_name(at, data, tmp_path):
    outside = Path(shutil.copytree(data / "ref", tmp_path / "ref", ignore=shutil.ignore_patterns("history*")))
    at.text_input(key=page_key("batches", "reference")).input(str(outside)).run()
    assert at.error[0].value.startswith(f"Cannot use this reference: {escape(str(outside.resolve()))} is outside the "
                                        "folders")
    damaged = Path(shutil.copytree(data / "ref", data / "damaged", ignore=shutil.ignore_patterns("history*")))
    try:
        with open(damaged / "fit_features.npy", "ab") as f:
            f.write(b"x")
        at.text_input(key=page_key("batches", "reference")).input(str(damaged)).run()
        assert not at.exception
        assert "fit_features.npy is damaged or was replaced" in markdown_text(at.error[0].value)
    finally:
        shutil.rmtree(damaged)


def test_the_score_pages_show_the_thresholds_interval(at):
    """Issue 20.5: under the threshold, the range in-distribution batches the query set's size flag."""
    for page, scorer in (("feature_scores", "feature"), ("prediction_scores", "prediction")):
        at.switch_page(f"ood_dashboard/views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        analysis = at.session_state["analysis"]
        view = analysis.threshold_view(scorer, percentile=5)
        lo, hi = flag_rate_interval(len(analysis.fit_index), 5, len(analysis.query_index), below=view.fit_flagged)
        text = (f"p = 5 of {len(analysis.fit_index):,} fit images: 95% of in-distribution batches of "
                f"{len(analysis.query_index):,} will flag between {lo:.1%} and {hi:.1%}.")
        assert text in [c.value for c in at.caption], page


def test_a_flagged_batch_image_opens_large_and_its_mark_records_the_reference_and_batch(at, data):
    """The flagged images' "View" opens the chosen image large (the score pages' large view, with the
    batch's scores), and a mark made there is stored under the batch's data with that image's id and
    the reference and batch it was made against (what export-review tells apart)."""
    import ood_core
    from ood_core.review import describe_split, reference_split_key

    at.text_input(key=page_key("batches", "reference")).input(str(data / "ref")).run()
    check(at, data / "odd", "odd for marks")
    odd = at.session_state[BATCH_RESULT][2]
    flagged = np.flatnonzero(odd.flagged["feature"])
    flagged = flagged[np.argsort(odd.scores["feature"][flagged], kind="stable")]
    chosen = int(flagged[1])  # the second lowest: not simply the first image drawn
    at.button(key=f"{page_key('batches', 'flagged')}_view_{chosen}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    facts = [t for t in at.table if "path" in list(t.value.iloc[:, 0])]
    assert len(facts) == 1
    table = dict(zip(facts[0].value.iloc[:, 0], facts[0].value.iloc[:, 1]))
    assert table["path"] == escape(odd.paths[chosen])
    assert table[ood_core.SCORERS["feature"].title].startswith(f"{odd.scores['feature'][chosen]:.4f} (flagged: below the frozen threshold")
    assert table["review"] == "not reviewed"
    big = [img for img in at.get("image") if not img.proto.imgs[0].caption]  # the large view's image: no caption
    assert len(big) == 1
    at.text_input(key=page_key("view", f"note_batch_{chosen}")).input("green, not ours").run()
    at.button(key=page_key("view", "mark_outlier")).click().run()
    assert not at.exception and not any("Could not" in e.value for e in at.error), [e.value for e in at.error]
    marks = ood_core.ReviewStore().marks(ood_core.dataset_key(odd.items))
    assert odd.ids[chosen] in marks and not set(marks) & (set(odd.ids) - {odd.ids[chosen]})
    mark = marks[odd.ids[chosen]]
    assert mark.verdict == "outlier" and mark.note == "green, not ours"
    assert mark.split == reference_split_key(Reference.load(data / "ref").digest, odd.batch_digest)
    assert describe_split(mark.split).startswith(f"the batch {odd.batch_digest[:12]} checked against reference")
    # the grid's caption of that image now carries its badge
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert sum("⚑ outlier" in c for c in captions) == 1
