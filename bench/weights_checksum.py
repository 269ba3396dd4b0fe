"""Weight-sync checksum speed: the old digest (BLAKE2b-128 of each tensor's float32 bytes, copied out with
``tobytes``) vs the current one (`policies.weight_sync._checksum`: XXH3-128, float32 tensors hashed in place).

    python bench/weights_checksum.py [--mb 400] [--repeat 3]

A state dict of ``--mb`` MB of float32 tensors (64 tensors, random); prints the best of ``--repeat`` runs
of each, in seconds and GB/s, and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def blake2b_checksum(sd: dict) -> str:  # the digest before issue 26
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(sd.items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    import torch

    from policies.weight_sync import _checksum

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n = a.mb * (1 << 20) // 4 // 64
    g = torch.Generator().manual_seed(0)
    sd = {f"layer.{i}.weight": torch.randn(n, generator=g) for i in range(64)}
    size = sum(t.numel() * 4 for t in sd.values())
    print(f"{size / 1e6:.0f} MB of float32 in 64 tensors; torch threads {torch.get_num_threads()}")
    for label, fn in (("blake2b (before)", blake2b_checksum), ("current", _checksum)):
        best = min(_time(fn, sd) for _ in range(a.repeat))
        print(f"{label:18s} {best:7.3f} s  {size / best / 1e9:6.2f} GB/s  {fn(sd)[:24]}")
        if label.startswith("blake"):
            base = best
    print(f"speed-up: {base / best:.1f}x")


def _time(fn, sd) -> float:
    t = time.perf_counter()
    fn(sd)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
