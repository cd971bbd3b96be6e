"""What the int4 GEMV's structure costs at M = 1 on an H100 (issue 5): timings of diagnostic kernels.

    PYTHONPATH=. python scripts/probe_int4_structure.py --out DIR [--rounds 3] [--only probes,chain,short]

Three sections (kernels: scripts/probe_int4_kernels.py), each timed like bench_int4_v6 (CUDA graph, weight sets
rotating over 200 MB, median of `--rounds` interleaved rounds) beside bf16, the read floor and the v7 call, on the
two 30.3 MB shapes; every variant that computes y is first checked against float64.
  probes  v7's loop with parts switched off or changed (probe_kernel's PROBE / AHEAD / SCALE_SMEM / X_MODE),
          partial kernel alone at 0.5x, 1x and 2x the planned splits; and the whole call (with the sum kernel)
          for x staged as in v7 and as one row (X_MODE 4, v9's x_smem 3).
  chain   a pure 30 MB read in chains of 1-16 dependent steps per program, or all at once (chain_read).
  short   short_kernel: each warp's K-blocks requested at once, warps of a program splitting K.
Output: DIR/<section>_log.txt, one line per check and per timing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import probe_int4_kernels as pk  # noqa: E402
import profile_int4  # noqa: E402
from bench_int4_v6 import Sets  # noqa: E402
from bench_quant_matmul import ROTATE_BYTES, read_floor, rel_error, time_per_call  # noqa: E402

from reference_impls.kernels.quant import triton_int4 as t4  # noqa: E402
from reference_impls.kernels.quant import triton_int4_v6 as v6  # noqa: E402

SHAPES = [(4096, 14336), (14336, 4096)]
NBYTES = 30_300_000  # the chain section's stream: the int4 bytes of either shape
SPLIT_VARIANTS = [dict(probe=0), dict(probe=2), dict(probe=3), dict(x_mode=4)]  # also at 0.5x and 2x the splits
SHORT = {(4096, 14336): [(8, 2), (4, 4), (8, 1), (4, 2), (8, 4), (16, 1)],  # (warps, K-blocks per warp)
         (14336, 4096): [(8, 4), (8, 2), (4, 4), (4, 2), (8, 1), (16, 2)]}


class Log:
    def __init__(self, path: Path) -> None:
        self.file = open(path, "a")  # noqa: SIM115 — kept open for the section, flushed per line

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def interleaved(entries: dict, rounds: int) -> dict[str, float]:
    """Median us of each entry over `rounds` rounds that each time every entry once."""
    samples: dict[str, list[float]] = {name: [] for name in entries}
    for _ in range(rounds):
        for name, fn in entries.items():
            samples[name].append(fn() * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


def report(say: Log, title: str, medians: dict[str, float]) -> None:
    say(title)
    bf16 = medians.get("bf16")
    for name, us in medians.items():
        say(f"  {name:28s} {us:7.2f} us" + (f"  {bf16 / us:.2f}x bf16" if bf16 else ""))


def baseline_entries(sets: Sets, n: int, k: int) -> dict:
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    full, partial, _, _ = profile_int4.parts(sets, 1)
    count = len(sets.frags)
    return {"bf16": lambda: time_per_call(lambda i: F.linear(sets.x[1], sets.bf16[i]), len(sets.bf16)),
            "read floor": lambda: read_floor(nbytes, 1024, 4, 4, copy=False)[0],
            "default call": lambda: time_per_call(full, count),  # int4_matmul_v6's fragment default (v9 at M = 1)
            "default partial kernel": lambda: time_per_call(partial, count)}


def checked(say: Log, label: str, y: torch.Tensor, ref: torch.Tensor, fp32: bool) -> bool:
    err = rel_error(y, ref)
    bound = 1e-5 if fp32 else 2 * rel_error(ref.to(torch.bfloat16), ref) + 1e-4
    say(f"check {label}: rel err {err:.2e} (bound {bound:.1e}) {'ok' if err <= bound else 'FAILED'}")
    return err <= bound


def probes(say: Log, rounds: int) -> None:
    for n, k in SHAPES:
        probes_shape(say, rounds, n, k)
        torch.cuda.empty_cache()


def probes_shape(say: Log, rounds: int, n: int, k: int) -> None:
    variants = [dict(ahead=a, scale_smem=ss, probe=p) for a in (1, 2, 3) for ss in (False, True) for p in (0, 1, 2)]
    variants += [dict(probe=3)] + [dict(x_mode=x, ahead=a) for x in (1, 2, 3, 4) for a in (1, 2)]
    sets = Sets(n, k, (1,))
    x, count = sets.x[1], len(sets.frags)
    ref = x.double() @ t4.dequantize_int4(sets.int4[0]).t()
    cfg = v6.default_config("fragment", 1) | {"x_smem": 1}
    planned = v6.launch_plan("fragment", 1, n, k, cfg, 132)["splits"]
    ws = torch.empty(2 * planned, 1, n, dtype=torch.float32, device="cuda")
    out = torch.empty(1, n, dtype=torch.bfloat16, device="cuda")
    entries = baseline_entries(sets, n, k)
    for x_mode in (0, 4):
        for splits in (planned, 2 * planned):
            y = pk.probe_call(x, sets.frags[0].frags, sets.frags[0].scale, ws, out, n, k, splits, x_mode=x_mode)
            if checked(say, f"{n}x{k} call x_mode {x_mode} splits {splits}", y, ref, False):
                entries[f"call x{x_mode} splits {splits}"] = (lambda xm=x_mode, sp=splits: time_per_call(
                    lambda i: pk.probe_call(x, sets.frags[i].frags, sets.frags[i].scale, ws, out, n, k, sp,
                                            x_mode=xm), count))
    for kw, splits in [(kw, planned) for kw in variants] + [
            (kw, sp) for kw in SPLIT_VARIANTS for sp in (max(1, planned // 2), 2 * planned)]:
        name = " ".join(f"{key}={int(v)}" for key, v in kw.items()) + f" splits={splits}"
        if kw.get("probe", 0) < 2:  # probes 2 and 3 compute no y
            s = pk.launch_probe(x, sets.frags[0].frags, sets.frags[0].scale, ws, n, k, splits, **kw)
            if kw.get("probe", 0) == 0 and not checked(say, f"{n}x{k} {name}", ws[:s].sum(0), ref, True):
                continue
        entries[name] = (lambda kw=kw, sp=splits: time_per_call(
            lambda i: pk.launch_probe(x, sets.frags[i].frags, sets.frags[i].scale, ws, n, k, sp, **kw), count))
    report(say, f"== probes N={n} K={k} M=1 (planned splits {planned}; partial kernels alone unless 'call')",
           interleaved(entries, rounds))


def chain_timed(step_bytes: int, steps: int, vec: int, warp_streams: bool, ahead: int, warps: int = 4,
                smem: bool = False):
    words_step = step_bytes // 4
    grid = NBYTES // 4 // (steps * words_step)
    words = grid * steps * words_step
    sets = [torch.randint(-2**30, 2**30, (words,), dtype=torch.int32, device="cuda")
            for _ in range(math.ceil(ROTATE_BYTES / (words * 4)))]
    dst = torch.empty(grid, dtype=torch.int32, device="cuda")
    return lambda: time_per_call(lambda i: pk.chain_read[(grid,)](
        sets[i], dst, steps, 0, STEP=words_step, STEPS=steps, VEC=vec, WARP_STREAMS=warp_streams, AHEAD=ahead,
        SMEM=smem, num_warps=warps), len(sets))


def chain(say: Log, rounds: int) -> None:
    cases = [dict(step_bytes=4096, steps=s, vec=v, warp_streams=ws, ahead=1) for v in (1, 4) for ws in (True, False)
             for s in (1, 2, 4, 8, 16)]
    cases += [dict(step_bytes=4096, steps=s, vec=v, warp_streams=v == 1, ahead=0) for s in (2, 4, 8) for v in (4, 1)]
    cases += [dict(step_bytes=4096, steps=8, vec=1, warp_streams=True, ahead=1, smem=True),
              dict(step_bytes=8192, steps=4, vec=4, warp_streams=False, ahead=1, warps=8)]
    entries = {" ".join(f"{key}={int(v)}" for key, v in c.items()): chain_timed(**c) for c in cases}
    report(say, f"== chain reads of {NBYTES / 1e6:.1f} MB (ahead=0: all steps at once)", interleaved(entries, rounds))


def short(say: Log, rounds: int) -> None:
    for (n, k), configs in SHORT.items():
        short_shape(say, rounds, n, k, configs)
        torch.cuda.empty_cache()


def short_shape(say: Log, rounds: int, n: int, k: int, configs: list[tuple[int, int]]) -> None:
    sets = Sets(n, k, (1,))
    x, count = sets.x[1], len(sets.frags)
    ref = x.double() @ t4.dequantize_int4(sets.int4[0]).t()
    ws = torch.empty(64, 1, n, dtype=torch.float32, device="cuda")
    out = torch.empty(1, n, dtype=torch.bfloat16, device="cuda")
    entries = baseline_entries(sets, n, k)
    for warps, bpw in configs:
        y = pk.short_call(x, sets.frags[0].frags, sets.frags[0].scale, n, k, ws, out, warps, bpw)
        if not checked(say, f"{n}x{k} short w{warps} b{bpw}", y, ref, False):
            continue
        entries[f"short w{warps} b{bpw} call"] = (lambda w=warps, b=bpw: time_per_call(
            lambda i: pk.short_call(x, sets.frags[i].frags, sets.frags[i].scale, n, k, ws, out, w, b), count))
    report(say, f"== short-chain kernel N={n} K={k} M=1", interleaved(entries, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="probes,chain,short", help="comma-separated sections")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sections = {"probes": probes, "chain": chain, "short": short}
    for name in args.only.split(","):
        if name not in sections:
            parser.error(f"--only takes {', '.join(sections)}; got {name!r}")
        sections[name](Log(args.out / f"{name}_log.txt"), args.rounds)


if __name__ == "__main__":
    main()
