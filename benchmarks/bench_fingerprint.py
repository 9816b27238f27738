"""Input-fingerprint cost: hashing a large file in full, and a rerun's check through the cache.

    python benchmarks/bench_fingerprint.py               # a 2 GB file
    python benchmarks/bench_fingerprint.py --gb 0.5      # quicker

Writes a JSON-lines file of the given size (news2016zh-like text) in a temp folder, then reports:
- the first hash of the whole file (xxh3-128, streamed), in GB/s: what a new or edited file costs once;
- a rerun's fingerprint check, served by OUT/.cache/fingerprints.json (size and mtime unchanged);
- the projection for news2016zh's 9 GB at the measured rate.
The first read is from the page cache (the file was just written); a cold disk bounds it by its read rate.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from m3e_data.storage.fingerprint import HashCache, fingerprint_files, hash_file

NEWS2016ZH_GB = 9.0


def make_file(path: Path, gb: float) -> None:
    row = json.dumps({"news_id": "610130831", "title": "新款国产手机发布，续航提升三成",
                      "content": "本周二，一家国产手机厂商发布了新款旗舰手机。" * 20}, ensure_ascii=False)
    block = ((row + "\n") * 4000).encode()
    target = int(gb * 1e9)
    with path.open("wb") as fh:
        written = 0
        while written < target:
            fh.write(block)
            written += len(block)
    # downloaded long ago: the cache trusts its entry at once (a just-written file is re-hashed once more)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "news2016zh"
        root.mkdir()
        big = root / "news2016zh_train.json"
        make_file(big, args.gb)
        size = big.stat().st_size / 1e9

        started = time.perf_counter()
        hash_file(big)
        full = time.perf_counter() - started

        cache = HashCache(Path(tmp) / "out")
        fingerprint_files([big], root, cache)  # a first build: hashes and fills the cache
        cache.save()
        started = time.perf_counter()
        again = HashCache(Path(tmp) / "out")
        fingerprint_files([big], root, again)
        check = time.perf_counter() - started
        assert again.hashed == 0

        rate = size / full
        print(f"file: {size:.2f} GB")
        print(f"full hash (xxh3-128, streamed): {full:.2f} s, {rate:.2f} GB/s")
        print(f"rerun check through the cache: {check * 1000:.1f} ms")
        print(f"news2016zh ({NEWS2016ZH_GB:.0f} GB): first hash ~{NEWS2016ZH_GB / rate:.1f} s, "
              f"rerun check ~{check * 1000:.1f} ms")


if __name__ == "__main__":
    main()
