"""CIFAR-10 as a user gets it: torchvision's archive downloaded (from a local HTTP server standing in
for torchvision's host) with progress, md5-checked, extracted safely; where cifar10() looks, in order."""
from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
import time

import numpy as np
import pytest

from ood_core._download import CHUNK, DownloadError
from ood_core.sources import cifar10
from ood_core.sources.cifar import cifar10_location, download_cifar10
from tests.test_sources import tiny_cifar_files, write_batches

README_BYTES = 600_000  # random, so the archive spans three 256 KiB progress steps


def make_archive(folder, extra: dict[str, tarfile.TarInfo] | None = None) -> bytes:
    """cifar-10-python.tar.gz bytes holding ``folder`` (a cifar-10-batches-py), plus raw members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
        for info in (extra or {}).values():
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A tiny torchvision-style CIFAR-10 (12 images) whose md5s torchvision's CIFAR10 is patched to know,
    its archive, and an empty user data dir (OOD_DATA_DIR) with OOD_CIFAR10 unset."""
    from torchvision.datasets import CIFAR10

    folder, names = write_batches(tmp_path / "src", np.random.default_rng(0))
    (folder / "readme.html").write_bytes(np.random.default_rng(1).bytes(README_BYTES))
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in [*names, "batches.meta"]}
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n in names[:5]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    archive = make_archive(folder)
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setenv("OOD_DATA_DIR", str(tmp_path / "userdata"))
    monkeypatch.delenv("OOD_CIFAR10", raising=False)
    return {"archive": archive, "folder": folder, "data_dir": tmp_path / "userdata" / "cifar10",
            "files": sorted([*names, "batches.meta", "readme.html"])}


class _Served:
    """A local HTTP server on 127.0.0.1 answering every GET with ``body`` (set per test)."""

    def __init__(self):
        served = self
        self.body, self.requests, self.cut_short, self.pause_s = b"", 0, 0, 0.0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                served.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(served.body) + served.cut_short))
                self.end_headers()
                try:
                    if served.pause_s:
                        self.wfile.write(served.body[:1000])
                        self.wfile.flush()
                        time.sleep(served.pause_s)
                    self.wfile.write(served.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first, as it should
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server(fake, monkeypatch):
    from torchvision.datasets import CIFAR10

    served = _Served()
    served.body = fake["archive"]
    monkeypatch.setattr(CIFAR10, "url", served.url)
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_download_reports_progress_checks_md5_and_extracts_into_the_data_dir(fake, server):
    calls = []
    batches = download_cifar10(progress=lambda done, total: calls.append((done, total)))
    total = len(fake["archive"])
    assert 2 * CHUNK < total < 3 * CHUNK
    # at the start, each time another 256 KiB boundary is passed (reads end wherever the socket's data
    # does, at most 256 KiB each), and at the end
    assert calls[0] == (0, total) and calls[-1] == (total, total) and 3 <= len(calls) <= 4
    assert all(t == total for _, t in calls)
    assert all(a // CHUNK < b // CHUNK for (a, _), (b, _) in zip(calls[:-2], calls[1:-1]))
    assert batches == fake["data_dir"] / "cifar-10-batches-py"
    # only the extracted folder is left: no archive, no .part file, no temporary folder
    assert listing(fake["data_dir"]) == ["cifar-10-batches-py"] + [f"cifar-10-batches-py/{n}" for n in fake["files"]]
    for name in fake["files"]:
        assert (batches / name).read_bytes() == (fake["folder"] / name).read_bytes()
    s = cifar10()  # no path, no OOD_CIFAR10: the downloaded copy
    assert len(s) == 12 and s.labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert s.description == "CIFAR-10 (10 train / 2 test) from cifar-10-batches-py"
    assert download_cifar10() == batches and server.requests == 1  # a verified copy is not fetched again


def test_a_wrong_md5_refuses_the_archive_and_leaves_nothing_behind(fake, server, monkeypatch):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)
    with pytest.raises(DownloadError, match=rf"{server.url} has md5 [0-9a-f]{{32}}, not the expected 0{{32}}; "
                                            "it was deleted"):
        download_cifar10()
    assert server.requests == 1 and listing(fake["data_dir"]) == []
    with pytest.raises(ValueError, match="no downloaded copy is in"):
        cifar10()


def test_an_unreachable_host_fails_fast_naming_the_url_and_the_local_alternatives(fake, monkeypatch):
    from torchvision.datasets import CIFAR10

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(CIFAR10, "url", url)
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        cifar10(download=True)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert message.startswith(f"could not download {url} (")
    for what in ("cifar-10-python.tar.gz", "cifar-10-batches-py folder", "{train,test}/{class}/*.jpg",
                 "the path argument", "OOD_CIFAR10"):
        assert what in message
    assert "shared" not in message and listing(fake["data_dir"]) == []


def test_a_host_that_never_answers_times_out(fake, monkeypatch):
    from torchvision.datasets import CIFAR10

    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{silent.getsockname()[1]}/x.tar.gz")
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/x\.tar\.gz "
                                                r"\(no answer within 0\.5 s\)"):
            download_cifar10(timeout=0.5)
        assert time.monotonic() - start < 3


def test_a_name_lookup_that_hangs_is_abandoned_at_the_deadline(fake, monkeypatch):
    import urllib.request

    def hang(url, timeout):
        time.sleep(3)
        raise OSError("gave up")

    monkeypatch.setattr(urllib.request, "urlopen", hang)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"\(no answer within 0\.3 s\)"):
        download_cifar10(timeout=0.3)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("cut_short, pause_s, match", [
    (1000, 0.0, "ended after {n:,} of {total:,} bytes"),  # the server closes 1000 bytes early
    (0, 1.5, r"broke off after 1,000 bytes \(no data for 0\.5 s\)"),  # the server stalls mid-transfer
])
def test_a_transfer_cut_short_or_stalled_leaves_nothing(fake, server, cut_short, pause_s, match):
    server.cut_short, server.pause_s = cut_short, pause_s
    n = len(server.body)
    with pytest.raises(DownloadError, match=match.format(n=n, total=n + cut_short)):
        download_cifar10(timeout=0.5)
    assert listing(fake["data_dir"]) == []


@pytest.mark.parametrize("name, kind", [
    ("cifar-10-batches-py/../../evil.txt", tarfile.REGTYPE),
    ("/tmp/evil.txt", tarfile.REGTYPE),
    ("cifar-10-batches-py/link", tarfile.SYMTYPE),
    ("elsewhere.txt", tarfile.REGTYPE),
])
def test_an_archive_with_a_member_outside_its_folder_is_refused(fake, server, monkeypatch, tmp_path, name, kind):
    from torchvision.datasets import CIFAR10

    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 5 if kind == tarfile.REGTYPE else 0
    info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    server.body = make_archive(fake["folder"], {name: info})
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(server.body).hexdigest())
    with pytest.raises(DownloadError, match=r"refusing to extract cifar-10-python\.tar\.gz: "):
        download_cifar10()
    assert not list(tmp_path.rglob("evil.txt")) and not (fake["data_dir"] / "cifar-10-batches-py").exists()
    assert listing(fake["data_dir"]) == ["cifar-10-python.tar.gz"]  # verified; kept for the next try


def test_where_cifar10_looks_path_then_env_then_the_downloaded_copy(fake, server, write_tree, monkeypatch):
    with pytest.raises(ValueError) as err:
        cifar10()
    message = str(err.value)
    assert message.startswith("cifar10: no path given and the OOD_CIFAR10 environment variable is not set, and "
                              f"no downloaded copy is in {str(fake['data_dir'])!r}. Download it (about 170 MB) "
                              "with download=True")
    assert "cifar-10-python.tar.gz" in message and "shared" not in message and server.requests == 0
    assert cifar10_location() is None
    assert len(cifar10(download=True)) == 12 and server.requests == 1  # 4. the download
    assert cifar10_location() == fake["data_dir"] / "cifar-10-batches-py"
    assert len(cifar10()) == 12  # 3. the downloaded copy
    jpegs = write_tree(tiny_cifar_files())
    monkeypatch.setenv("OOD_CIFAR10", str(jpegs))
    assert cifar10_location() == jpegs
    assert len(cifar10()) == 40  # 2. the environment variable beats the downloaded copy
    assert len(cifar10(download=True)) == 40  # ... and a local copy there is used, not downloaded
    assert len(cifar10(fake["folder"])) == 12  # 1. the path beats the environment variable
    monkeypatch.setenv("OOD_CIFAR10", str(jpegs / "missing"))
    with pytest.raises(ValueError, match=r"missing' \(from OOD_CIFAR10\) does not exist"):
        cifar10()
    assert server.requests == 1


def test_download_only_when_asked_and_into_the_given_folder(fake, server, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    with pytest.raises(ValueError, match="holds neither cifar10/{train,test}/ nor cifar-10-batches-py; pass "
                                         "download=True"):
        cifar10(target)
    assert server.requests == 0
    assert len(cifar10(target, download=True)) == 12 and server.requests == 1
    assert listing(target) == ["cifar-10-batches-py"] + [f"cifar-10-batches-py/{n}" for n in fake["files"]]


def test_a_local_archive_is_checked_and_extracted_into_the_data_dir(fake, tmp_path):
    archive = tmp_path / "downloads" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(fake["archive"])
    s = cifar10(archive)
    assert len(s) == 12 and s.description.endswith("from cifar-10-python.tar.gz")
    assert (fake["data_dir"] / "cifar-10-batches-py" / "test_batch").is_file() and archive.is_file()
    assert len(cifar10(archive.parent)) == 12  # the folder holding the archive works too
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(fake["folder"] / "batches.meta", arcname="cifar-10-batches-py/batches.meta")
    with pytest.raises(ValueError, match=r"is a tar archive but not torchvision's cifar-10-python\.tar\.gz "
                                         r"\(md5 [0-9a-f]{32}, expected [0-9a-f]{32}\); refusing to unpack it"):
        cifar10(other)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="is a file but neither a zip archive nor torchvision's"):
        cifar10(tmp_path / "notes.txt")
