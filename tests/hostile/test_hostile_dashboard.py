"""Hostile names, failed saves and damaged kept files through the dashboard (``AppTest``), issue 18.

- 18.4: file, class and id names written as Markdown and HTML (links, ``javascript:`` links, bare
  addresses GitHub-flavoured Markdown links by itself, bold, ``<a href>``) are shown as text on
  every page: no rendered element holds live Markdown or HTML made of them.
- 18.5: a mark that cannot be saved (a full disk) is never shown as saved: no success toast, and
  its error stays atop the page after the rerun until dismissed or a mark is saved.
- 18.6: a damaged kept map is computed again with a warning instead of crashing the map page.
"""
from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import ood_core  # noqa: E402
from ood_dashboard.markup import escape, plotly_text  # noqa: E402
from ood_dashboard.navigation import PAGES  # noqa: E402
from ood_dashboard.runs import RunSettings, compute_run  # noqa: E402
from ood_dashboard.state import ANALYSIS, EXPLAIN_POSITION, MARK_ERROR, RUN_SETTINGS  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120
# Names a folder may hold (no "/"): a link, a javascript: link, a bare address, bold, HTML.
CLASS_NAMES = ("[click](javascript:alert(2))", "www.evil.com", "**bold** <b>x<_b>")
FILE_NAMES = ("[link](https:__evil.com) **b**", "<a href=https:__evil.com>a<_a>", "mail@evil.com", "plain")
# What an uploaded .npz may carry: anything.
NPZ_IDS = ("[x](https://evil.com)", "https://evil.com/p", '<a href="https://evil.com">a</a>', "**b** www.evil.com",
           "me@evil.com", "javascript:alert(1)")
NPZ_CLASSES = ("[c](https://evil.com)", "<a href='https://evil.com'>c</a>", "https://evil.com/c")
NOTE = "[note](https://evil.com) **n**"


# ------------------------------------------------------------------ what counts as live markup
def unescaped(text: str) -> str:
    """What Markdown shows of ``text``'s backslash escapes."""
    return re.sub(r"\\(.)", r"\1", text)


def markdown_hazards(text: str) -> list[str]:
    """The live Markdown or HTML made of the hostile names in ``text`` read as Markdown: a link to
    one of their targets, their bold, their tags, or a bare address of theirs that GitHub-flavoured
    Markdown links by itself (in the text left once the escapes are read). The app's own Markdown
    (``**Run**``, its ``<style>``) is not theirs."""
    found = []
    for name, pattern in (("link", r"(?<!\\)\]\((javascript|https?)"), ("bold", r"(?<!\\)\*\*(b|bold|n)(?<!\\)\*\*"),
                          ("tag", r"(?<!\\)<(a |a>|/a>|b>|_b>)")):
        if re.search(pattern, text, re.IGNORECASE):
            found.append(name)
    shown = unescaped(text)
    if re.search(r"(?i)(https?://|(?<![\w.])www\.)evil", shown) or re.search(r"[-.\w+]+@evil\.", shown):
        found.append("autolink")
    return found


def plotly_hazards(text: str) -> list[str]:
    """Tags of plotly's HTML subset made of the hostile names (plotly's own ``<br>``/``<extra>`` are fine)."""
    return [tag for tag in ("<a ", "<a>", "<b>", "<_b>") if tag in text.lower()]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def rendered(at: AppTest) -> tuple[list[str], list[str]]:
    """Every text the page renders as Markdown (labels, help, captions, alerts, toasts, metrics,
    table cells, radio and segmented options) and every string of its plotly figures."""
    markdown, plotly = [], []

    def walk(node) -> None:
        kind = getattr(node, "type", "")
        proto = getattr(node, "proto", None)
        if kind == "plotly_chart":
            plotly.extend(_strings(json.loads(node.proto.spec)))
        elif kind == "table":
            markdown.extend(str(v) for v in node.value.to_numpy().ravel())
            markdown.extend(str(c) for c in node.value.columns)
        elif kind == "imgs":
            markdown.extend(c for c in node.captions if c)
        elif proto is not None and kind not in ("arrow_data_frame", "selectbox", "multiselect", "text_input"):
            for field in ("body", "label", "help", "value"):
                text = getattr(proto, field, None)
                if isinstance(text, str) and text:
                    markdown.append(text)
            if kind in ("radio", "button_group"):
                markdown.extend(str(o) for o in getattr(node, "options", []))
        elif proto is not None:  # plain-text widgets: their label and help are Markdown, their options not
            markdown.extend(t for t in (proto.label, proto.help) if t)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return markdown, plotly


def assert_shown_as_text(at: AppTest, where: str, seen: list[str]) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])
    markdown, plotly = rendered(at)
    bad = [(where, text, markdown_hazards(text)) for text in markdown if markdown_hazards(text)]
    bad += [(where, text, plotly_hazards(text)) for text in plotly if plotly_hazards(text)]
    assert bad == []
    seen.extend(markdown + plotly)


# ------------------------------------------------------------------ hostile data
def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def hostile_folder(folder: Path, per_class: dict[str, int]) -> Path:
    """``folder/{split}/{hostile class}/{hostile file name} {split}{i}.png``: ``per_class[split]`` random
    8x8 images per class and split."""
    seed = 0
    for split, count in per_class.items():
        for c, cls in enumerate(CLASS_NAMES):
            for i in range(count):
                seed += 1
                _image(folder / split / cls / f"{FILE_NAMES[(i + c) % len(FILE_NAMES)]} {split}{i}.png", seed)
    return folder


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    """Two runs: a folder whose class folders and files carry hostile names, and an .npz whose ids
    and class names do. ``OOD_CACHE_DIR`` and ``OOD_DATA_DIR`` (the marks) in temporary folders."""
    base = tmp_path_factory.mktemp("hostile-names")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", str(base / "cache"))
        mp.setenv("OOD_DATA_DIR", str(base / "data"))
        from ood_dashboard import review

        review.store.clear()  # the dashboard's store, cached per process, opens the marks file of this folder
        folder = hostile_folder(base / "images", {"train": 4, "test": 2})
        rng = np.random.default_rng(0)
        n_fit, n_query = 24, len(NPZ_IDS) + 6
        labels = np.concatenate([np.repeat([0, 1], n_fit // 2), rng.integers(0, 3, n_query)])
        features = rng.normal(size=(n_fit + n_query, 6)) + labels[:, None] * 3.0
        ids = [f"fit {i}" for i in range(n_fit)] + list(NPZ_IDS) + [f"{NPZ_IDS[0]} {i}" for i in range(6)]
        npz = base / "hostile.npz"
        np.savez(npz, features=features, labels=labels, ids=np.array(ids), class_names=np.array(NPZ_CLASSES),
                 split=np.array(["train"] * n_fit + ["test"] * n_query))
        runs = {}
        for name, settings in (("folder", RunSettings(source=str(folder), label="Image folder",
                                                             config=ood_core.RunConfig(model="pixels"))),
                               ("npz", RunSettings(source=str(npz), label="Upload precomputed features"))):
            runs[name] = (settings, compute_run(settings))
        yield runs
        review.store.clear()  # later tests open the marks file of their own data folder


def app_on(settings: RunSettings, analysis: ood_core.Analysis) -> AppTest:
    """A session whose current run is ``analysis`` (as after pressing Run on the Data page)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[ANALYSIS] = analysis
    at.session_state[RUN_SETTINGS] = settings
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page(name: str) -> str:
    return f"ood_dashboard/views/{name}.py"


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_hostile_names_are_shown_as_text_on_every_page(hostile_runs, kind):
    settings, analysis = hostile_runs[kind]
    store, key = ood_core.ReviewStore(), ood_core.dataset_key(analysis)
    hostile = [p for p, i in enumerate(analysis.ids) if "evil" in i or "javascript" in i]
    store.mark(key, [analysis.ids[p] for p in hostile[:3]], "outlier", NOTE)  # badges and notes too
    at, seen = app_on(settings, analysis), []
    for spec in PAGES:
        at.switch_page(page(spec.name)).run()
        assert_shown_as_text(at, spec.name, seen)
    # "Why this one?" on a hostile item; the map coloured by class (legend names) and by mark
    at.session_state[EXPLAIN_POSITION] = hostile[0]
    at.switch_page(page("neighbours")).run()
    assert_shown_as_text(at, "neighbours of a hostile item", seen)
    at.switch_page(page("embedding_map")).run()
    for colour in ("class", "mark"):
        at.selectbox(key="map_colour").set_value(colour).run()
        assert_shown_as_text(at, f"map by {colour}", seen)
    # the large view of a hostile item (its table of facts, the note)
    at.switch_page(page("table")).run()
    at.session_state["table_rows"] = {"selection": {"rows": [int(np.flatnonzero(
        at.dataframe[0].value["position"].to_numpy() == hostile[0])[0])], "columns": [], "cells": []}}
    at.run()
    at.button(key="table_open").click().run()
    assert_shown_as_text(at, "large view", seen)
    facts = " ".join(seen)
    # not vacuous: the names are there, escaped (Markdown) or as entities (plotly)
    assert escape(analysis.ids[hostile[0]]) in facts and escape(NOTE) in facts
    names = CLASS_NAMES if kind == "folder" else NPZ_CLASSES
    assert all(escape(c) in facts for c in names) and all(plotly_text(c) in facts for c in names)


def test_escape_shows_the_text_and_links_nothing():
    for text in (*CLASS_NAMES, *FILE_NAMES, *NPZ_IDS, *NPZ_CLASSES, "1. # > - + x", "&amp; &#60;", ":red[x] $x$"):
        assert markdown_hazards(escape(text)) == [], text
        assert unescaped(escape(text)).replace("\u2060", "") == text
    assert [markdown_hazards(t) for t in ("[a](javascript:x)", "see https://evil.com", "a@evil.com", "**b**",
                                           "<a href=x>", "Press **Run**", "<style>")] == [
        ["link"], ["autolink"], ["autolink"], ["bold"], ["tag"], [], []]


# ------------------------------------------------------------------ 18.5: a mark that cannot be saved
def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_bulk_mark_that_cannot_be_saved_stays_visible_and_is_not_called_saved(hostile_runs, monkeypatch):
    settings, analysis = hostile_runs["folder"]
    at = app_on(settings, analysis)
    at.switch_page(page("feature_scores")).run()
    key = ood_core.dataset_key(analysis)
    before = ood_core.ReviewStore().marks(key)
    monkeypatch.setattr(ood_core.ReviewStore, "mark", full_disk)
    at.button(key="feature_query_bulk_outlier").click().run()
    assert not at.exception and [t.value for t in at.toast] == []  # no "Marked ... outlier"
    message = "Could not mark 6 image(s) outlier: nothing was saved"
    assert any(e.value.startswith(message) and "No space left on device" in e.value for e in at.error)
    at.run()  # any rerun (another click, a threshold change): the error is still there, atop the page
    assert message in str([e.value for e in at.error])
    assert at.session_state[MARK_ERROR].startswith(message)
    at.switch_page(page("table")).run()
    assert any(e.value.startswith(message) for e in at.error)  # on every page
    assert ood_core.ReviewStore().marks(key) == before and not any("outlier" in c for i in at.image for c in i.captions)
    monkeypatch.undo()  # the disk has room again: a saved mark clears the error
    at.switch_page(page("feature_scores")).run()
    at.button(key="feature_query_bulk_outlier").click().run()
    assert [t.value for t in at.toast] == ["Marked 6 images outlier"]
    at.run()
    assert not any(message in e.value for e in at.error) and MARK_ERROR not in at.session_state
    ood_core.ReviewStore().clear(key, list(ood_core.ReviewStore().marks(key)))


def _large_view_script():
    """The large view of item 0 of the session's analysis, under the failed-mark notice, as ``app.py``
    draws it atop every page (a dialog's own buttons rerun only the dialog in a browser; AppTest reruns
    the script, which here opens the dialog again)."""
    import streamlit as st

    from ood_dashboard import review
    from ood_dashboard.state import ANALYSIS

    review.mark_error_notice()
    if not st.session_state.get("closed"):
        review.item_view(st.session_state[ANALYSIS], 0)


def test_a_mark_from_the_large_view_that_cannot_be_saved_says_so_until_dismissed(hostile_runs, monkeypatch):
    settings, analysis = hostile_runs["folder"]
    at = AppTest.from_function(_large_view_script, default_timeout=TIMEOUT)
    at.session_state[ANALYSIS] = analysis
    at.run()
    monkeypatch.setattr(ood_core.ReviewStore, "mark", full_disk)
    at.text_input(key="view_note_0").input("a bar")
    at.button(key="view_mark_outlier").click().run()
    message = "Could not mark 1 image(s) outlier: nothing was saved"
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error if e.value.startswith(message)]  # in the dialog, which stays open
    assert analysis.ids[0] not in ood_core.ReviewStore().marks(ood_core.dataset_key(analysis))
    at.session_state["closed"] = True  # the dialog closed: the next run shows the error atop the page
    at.run()
    assert [e.value for e in at.error if e.value.startswith(message)]
    at.button(key="mark_error_dismiss").click().run()
    assert not [e.value for e in at.error if e.value.startswith(message)]


# ------------------------------------------------------------------ 18.6: a damaged kept map
def test_a_damaged_kept_map_is_drawn_again_with_a_warning(hostile_runs):
    settings, analysis = hostile_runs["npz"]
    at = app_on(settings, analysis)
    at.switch_page(page("embedding_map")).run()
    assert not at.exception and not at.warning
    kept = [p for p in Path(analysis.cache_dir or ood_core.default_cache_dir(), "runs").glob("*.npz")
            if "coords" in np.load(p).files]
    for path in kept:
        path.write_bytes(path.read_bytes()[:64])  # cut short, as a full disk or a killed copy leaves it
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("is unreadable or does not match this run" in w.value and "computing it again" in w.value
               for w in at.warning)
    assert at.get("plotly_chart")
    at.run()
    assert not at.warning  # written again: read back
