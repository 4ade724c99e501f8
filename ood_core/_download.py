"""Downloads that report progress, fail fast and clearly without a network, verify a checksum and
appear atomically; and tar extraction that cannot write outside its folder."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from ._progress import StepProgress

CHUNK = 1 << 18  # 256 KiB per read, and per progress report
DEFAULT_TIMEOUT_S = 10.0


class DownloadError(RuntimeError):
    """A download that could not be completed: no network, no answer, a refused checksum."""


def _open(url: str, timeout: float):
    """``urlopen(url)`` with a hard deadline. The socket timeout bounds connecting and each read, but
    not the name lookup, which can hang far longer on a machine without a network; so the opening
    runs in a daemon thread and is abandoned (its answer closed) when the deadline passes."""
    box: dict = {}
    done, abandoned = threading.Event(), threading.Event()

    def connect() -> None:
        try:
            box["response"] = urllib.request.urlopen(url, timeout=timeout)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()
            if abandoned.is_set() and box.get("response") is not None:
                box["response"].close()

    threading.Thread(target=connect, name="ood-download-open", daemon=True).start()
    if not done.wait(timeout):
        abandoned.set()
        if done.is_set() and box.get("response") is not None:
            box["response"].close()
        raise TimeoutError("timed out")
    if "error" in box:
        raise box["error"]
    return box["response"]


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(exc) or type(exc).__name__


def fetch(url: str, dest: str | os.PathLike, *, md5: str, size_hint: int = 0,
          progress: StepProgress | None = None, timeout: float = DEFAULT_TIMEOUT_S, hint: str = "") -> Path:
    """Download ``url`` to ``dest``: into ``<dest>.<random>.part`` beside it, checked against ``md5``,
    then renamed to ``dest``; on any failure the part file is removed and ``dest`` is untouched.

    ``progress(done_bytes, total_bytes)`` is called at the start, each time another 256 KiB has
    arrived, and at the end; ``total_bytes`` is the server's Content-Length, else ``size_hint``
    (0: unknown). ``timeout`` bounds the wait for an answer and any silence during the transfer.
    Raises ``DownloadError`` naming the URL and the reason, followed by ``hint`` (what to do instead)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def error(what: str) -> DownloadError:
        return DownloadError(f"{what}{'; ' + hint if hint else ''}")

    try:
        response = _open(url, timeout)
    except (OSError, ValueError) as exc:  # URLError, refused, unreachable, TimeoutError, a bad URL
        raise error(f"could not download {url} ({_reason(exc, timeout)})") from exc
    try:
        fd, part = tempfile.mkstemp(prefix=f"{dest.name}.", suffix=".part", dir=dest.parent)
    except BaseException:
        response.close()
        raise
    try:
        with response, os.fdopen(fd, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else int(size_hint)
            digest, done, reported = hashlib.new("md5"), 0, 0
            if progress is not None:
                progress(0, total)
            while True:
                try:
                    block = response.read1(CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # a stall past the timeout, a cut
                    why = f"no data for {timeout:g} s" if isinstance(exc, TimeoutError) else _reason(exc, timeout)
                    raise error(f"the download of {url} broke off after {done:,} bytes ({why})") from exc
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None and done // CHUNK > reported // CHUNK:
                    progress(done, max(total, done))
                    reported = done
            if progress is not None and reported != done:
                progress(done, max(total, done))
        if length and done != total:
            raise error(f"the download of {url} ended after {done:,} of {total:,} bytes")
        if digest.hexdigest() != md5:
            raise error(f"the file downloaded from {url} has md5 {digest.hexdigest()}, not the expected {md5}; "
                        "it was deleted")
        os.replace(part, dest)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
    return dest


def _member_problem(member: tarfile.TarInfo, root: str) -> str | None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not name.parts or name.parts[0] != root:
        return f"its path {member.name!r} is not inside {root}/"
    if not (member.isfile() or member.isdir()):
        return f"{member.name!r} is a link or a special file"
    return None


def extract_tar(archive: str | os.PathLike, dest_dir: str | os.PathLike, root: str) -> Path:
    """Extract the tar archive's folder ``root`` (every member must be a plain file or folder under
    it: anything else refuses the whole archive) into ``dest_dir/root``, through a temporary folder
    beside it, so that ``dest_dir/root`` appears complete or not at all (an older one is replaced).
    Uses tarfile's ``filter="data"`` where Python has it."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / root
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    problem = _member_problem(member, root)
                    if problem is not None:
                        raise DownloadError(f"refusing to extract {Path(archive).name}: {problem}")
                    tar.extract(member, work, **safe)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DownloadError(f"{Path(archive).name} could not be extracted: {exc}") from exc
        if not (work / root).is_dir():
            raise DownloadError(f"{Path(archive).name} holds no {root}/ folder")
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=dest_dir))
            os.replace(target, old / root)
        os.replace(work / root, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
