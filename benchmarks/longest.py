"""The longest causal and non-causal forward that fits on one device, doubling N until it fails.

    PYTHONPATH=. python3 benchmarks/longest.py [--start 32768] [--stop 1048576] [--impls ...]

Prints, per implementation, the largest N that ran (bf16, B=1, H=16, D=128 on GPU), its time, and
the error that stopped it. Each N runs once after compiling; rows that fail are reported, not
raised.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.attention import implementations, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=int, default=32768)
    parser.add_argument("--stop", type=int, default=1 << 20)
    parser.add_argument("--impls", default="tlir_flash,naive_xla")
    parser.add_argument("--causal", action="store_true")
    args = parser.parse_args()

    import jax
    import numpy as np

    on_gpu = jax.default_backend() == "gpu"
    heads, dim, dtype = (16, 128, "bfloat16") if on_gpu else (8, 64, "float32")
    print(
        f"# {jax.devices()[0].device_kind}, {dtype}, B=1, H={heads}, D={dim}, causal={args.causal}"
    )
    for impl in args.impls.split(","):
        fn = jax.jit(implementations(on_gpu, heads, args.causal)[impl])
        n, best = args.start, None
        while n <= args.stop:
            try:
                q, k, v = inputs(n, heads, dim, dtype)
                jax.block_until_ready(fn(q, k, v))
                start = time.perf_counter()
                out = jax.block_until_ready(fn(q, k, v))
                seconds = time.perf_counter() - start
                finite = bool(np.isfinite(np.asarray(out[0, 0, -4:], np.float32)).all())
                best = (n, seconds, finite)
                print(f"{impl} N={n}: {seconds * 1e3:.1f} ms, finite={finite}", flush=True)
                del q, k, v, out
            except Exception as error:  # noqa: BLE001 - running out of memory is the answer
                print(f"{impl} N={n}: failed: {str(error).splitlines()[0][:120]}", flush=True)
                break
            n *= 2
        print(f"## {impl}: longest N = {best[0] if best else 'none'}")


if __name__ == "__main__":
    main()
