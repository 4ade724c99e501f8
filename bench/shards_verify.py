"""What checking a shard folder costs: open (header and size of every shard), the first full read
(each shard's SHA-256 checked once), the same read with the check skipped, and a second read in
the same process (every shard already verified).

    python bench/shards_verify.py [ROWS] [FOLDER]     (default 262144 rows x 1280, a temporary folder)

Each read runs in a fresh process, after the folder was written (so the files are in the page cache
for both: the difference is the hashing).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/shards_verify.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))
DIM = 1280
_READ = r"""
import json, sys, time
import numpy as np
import ood_core._feature_shards as F
from ood_core.shards import FeatureShards
if sys.argv[2] == "unchecked":
    F.verify_shard = lambda shard: None
t = time.perf_counter(); shards = FeatureShards.open(sys.argv[1]); opened = time.perf_counter() - t
t = time.perf_counter(); total = sum(float(b[:, 0].sum()) for b in shards.blocks()); first = time.perf_counter() - t
t = time.perf_counter(); total = sum(float(b[:, 0].sum()) for b in shards.blocks()); second = time.perf_counter() - t
print(json.dumps({"open_s": opened, "first_read_s": first, "second_read_s": second}))
"""


def main(rows: int = 262_144, folder: str | None = None) -> None:
    from ood_core.shards import ShardWriter

    out = Path(folder or tempfile.mkdtemp(prefix="shards-verify-")) / f"s{rows}"
    start = time.perf_counter()
    writer = ShardWriter(out, n_rows=rows, key="bench", shard_rows=4096)
    for number in writer.pending():
        a, b = writer.span(number)
        writer.write(number, np.full((b - a, DIM), number, dtype=np.float32))
    writer.finish({"ids": np.arange(rows).astype(str)})
    print(f"wrote {rows:,} x {DIM} float32 ({rows * DIM * 4 / 1e9:.2f} GB, {writer.n_shards} shards) "
          f"in {time.perf_counter() - start:.1f} s")
    for mode in ("checked", "unchecked"):
        result = json.loads(subprocess.run([sys.executable, "-c", _READ, str(out), mode], check=True,
                                           capture_output=True, text=True, cwd=ROOT).stdout)
        print(mode, {k: round(v, 3) for k, v in result.items()})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 262_144, sys.argv[2] if len(sys.argv) > 2 else None)
