"""Softmax over one long vector in three, or two, passes over memory.

A softmax y = exp(x) / sum(exp(x)) needs the sum before any output can be written, so at least two passes over
the input: one to reduce, one to write. The textbook safe softmax takes three (max, then sum of exp(x - max),
then the write); the extra pass costs a full read of the vector once it no longer fits in the last-level cache.
Two ways to drop it:
  online softmax  (Milakov & Gimelshein 2018) keeps a running max and rescales the running sum when it grows.
  two-pass        (Dukhan & Ablavatski 2020, "The Two-Pass Softmax Algorithm") represents each exp(x_i) as a
                  mantissa and an integer power of two, m_i * 2^n_i with x_i = n_i * ln2 + r_i, and accumulates
                  the sum in that extended-exponent form, so the sum cannot overflow and no max is needed.

Every pass here streams the input once, in chunks of `chunk` elements, with torch ops on the chunk (it stays
in cache between them) and the write pass writing straight into the output (`out=`): no full-size temporaries.
The Python loop over chunks costs a few microseconds per torch call, about 4-12 calls per chunk and pass, so
chunks should hold 10^5 elements or more (a 128 Ki-element float32 chunk is 512 KiB and a pass over it takes
~30-100 us here); `torch_calls` counts the calls. Every implementation evaluates exponentials as exp2 of a
log2(e)-scaled argument (torch.exp2 is ~3x faster than torch.exp on this CPU build), so the comparison is
between pass structures, not exp routines. CPU-oriented: per-chunk reductions are read back as Python floats.

What it shows on one core of an EPYC VM (suites/long_context_cpu.yaml): each torch op is its own sweep of the
chunk through cache, so in-cache work, not DRAM passes, sets the time; two-pass, with 12 calls per chunk in its
first pass against three-pass's 4, is 1.5-1.8x slower in cache and closes in past the LLC (1.3x at 16 Mi
elements, 1.1x at 64 Mi). The paper's gain needs the per-element arithmetic fused in registers (one SIMD kernel
per pass), which plain torch ops cannot express.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_CHUNK = 131072  # elements per chunk: 512 KiB of float32; a chunk and its scratch fill a 1 MiB L2, sit in L3
LOG2E = 1.4426950408889634
LN2_HI = 0.693359375  # ln 2 split for Cody-Waite reduction: 9 significant bits, so n * LN2_HI is exact in float32
LN2_LO = -2.1219444005469057e-04  # ln 2 - LN2_HI
MIN_EXPONENT = -16384.0  # log2-domain floor: exp(-inf) inputs (masked logits) contribute exactly 0, never NaN

IMPLEMENTATIONS = ("three_pass", "three_pass_stored", "online", "two_pass", "torch")
# Memory passes over the N-element vector: (reads of the input or output, writes of the output).
PASSES = {"three_pass": (3, 1), "three_pass_stored": (3, 2), "online": (2, 1), "two_pass": (2, 1), "torch": (3, 2)}
# torch calls per chunk in each chunked pass, and whole-vector calls (the max, the final scale, the allocation).
_CALLS_PER_CHUNK = {"three_pass": 8, "three_pass_stored": 4, "online": 9, "two_pass": 16}
_WHOLE_CALLS = {"three_pass": 1, "three_pass_stored": 2, "online": 0, "two_pass": 1, "torch": 1}
# Per element: FLOPs each implementation executes (exp excluded) and exponentials it evaluates.
EXECUTED_FLOPS = {"three_pass": 7, "three_pass_stored": 5, "online": 7, "two_pass": 15, "torch": 4}
EXPONENTIALS = {"three_pass": 2, "three_pass_stored": 1, "online": 2, "two_pass": 3, "torch": 1}
MIN_FLOPS_PER_ELEMENT = 4  # max, subtract, sum, scale: what any safe softmax must do besides one exp


def _check_vector(x: Tensor, chunk: int) -> None:
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"softmax here is over one non-empty vector; got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"softmax needs a floating-point vector, got {x.dtype}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 element, got {chunk}")


def _output(x: Tensor, out: Tensor | None) -> Tensor:
    if out is None:
        return torch.empty_like(x)
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(f"out must match x: got {tuple(out.shape)}/{out.dtype}/{out.device}, "
                         f"want {tuple(x.shape)}/{x.dtype}/{x.device}")
    return out


def softmax_reference(x: Tensor) -> Tensor:
    """The golden answer: softmax in float64."""
    return torch.softmax(x.detach().to(torch.float64), dim=0)


def _write_pass(x: Tensor, out: Tensor, shift: float, scale: float, chunk: int) -> None:
    """out = exp(x - shift) * scale, chunk by chunk: the one pass that writes (4 torch calls per chunk)."""
    for start in range(0, x.numel(), chunk):
        o = out[start:start + chunk]
        torch.sub(x[start:start + chunk], shift, out=o)
        o.mul_(LOG2E).exp2_().mul_(scale)


def three_pass_softmax(x: Tensor, out: Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Safe softmax: pass 1 max, pass 2 sum of exp(x - max), pass 3 write exp(x - max) / sum (exp recomputed)."""
    _check_vector(x, chunk)
    out = _output(x, out)
    peak = float(torch.amax(x))  # pass 1: one streaming reduction, no temporary
    buf = torch.empty(min(chunk, x.numel()), dtype=x.dtype, device=x.device)
    total = 0.0
    for start in range(0, x.numel(), chunk):  # pass 2
        b = buf[: min(chunk, x.numel() - start)]
        torch.sub(x[start:start + chunk], peak, out=b)
        total += float(b.mul_(LOG2E).exp2_().sum())
    _write_pass(x, out, peak, 1.0 / total, chunk)  # pass 3
    return out


def three_pass_stored_softmax(x: Tensor, out: Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Safe softmax that stores exp(x - max) in the output in pass 2 and scales it in place in pass 3."""
    _check_vector(x, chunk)
    out = _output(x, out)
    peak = float(torch.amax(x))
    total = 0.0
    for start in range(0, x.numel(), chunk):
        o = out[start:start + chunk]
        torch.sub(x[start:start + chunk], peak, out=o)
        total += float(o.mul_(LOG2E).exp2_().sum())
    return out.mul_(1.0 / total)


def online_softmax(x: Tensor, out: Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Pass 1 keeps a running max M and sum S (S rescaled by exp(M_old - M_new) when a chunk raises M); pass 2
    writes exp(x - M) / S."""
    _check_vector(x, chunk)
    out = _output(x, out)
    buf = torch.empty(min(chunk, x.numel()), dtype=x.dtype, device=x.device)
    running_max, running_sum = -math.inf, 0.0
    for start in range(0, x.numel(), chunk):
        c = x[start:start + chunk]
        b = buf[: c.numel()]
        chunk_max = float(torch.amax(c))
        if chunk_max == -math.inf:
            continue  # a fully masked chunk adds nothing (and exp(-inf - -inf) would be NaN)
        torch.sub(c, chunk_max, out=b)
        chunk_sum = float(b.mul_(LOG2E).exp2_().sum())
        new_max = max(running_max, chunk_max)
        running_sum = running_sum * math.exp(running_max - new_max) + chunk_sum * math.exp(chunk_max - new_max)
        running_max = new_max
    _write_pass(x, out, running_max, 1.0 / running_sum, chunk)
    return out


def _extended_exp_sum(c: Tensor, n: Tensor, m: Tensor) -> tuple[float, int]:
    """Sum of exp(c_i) as (mantissa sum, exponent): each exp(c_i) = m_i * 2^n_i with c_i = n_i * ln2 + r_i,
    m_i = exp(r_i) in [0.7, 1.42]; the chunk's terms are aligned to its largest n with exact powers of two.
    `n` and `m` are scratch buffers of c's length (12 torch calls)."""
    torch.mul(c, LOG2E, out=n).clamp_(min=MIN_EXPONENT).round_()  # n_i = round(c_i * log2 e)
    torch.add(c, n, alpha=-LN2_HI, out=m).add_(n, alpha=-LN2_LO)  # r_i = c_i - n_i ln2 (Cody-Waite, exact hi part)
    m.mul_(LOG2E).exp2_()  # m_i = exp(r_i)
    top = float(torch.amax(n))
    n.sub_(top).exp2_()  # 2^(n_i - top): an integer power of two, exact (or 0 below float's range)
    return float(m.mul_(n).sum()), int(top)  # torch.sum sums pairwise; a float32 dot would lose ~1e-6 at 64Ki


def two_pass_softmax(x: Tensor, out: Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Dukhan & Ablavatski: pass 1 accumulates sum(exp(x)) as (mantissa, power of two) without a max pass;
    pass 2 writes m_i * 2^(n_i - N) / M, evaluated as one exponential exp(x_i - N ln2) since N is then known."""
    _check_vector(x, chunk)
    out = _output(x, out)
    size = min(chunk, x.numel())
    n_buf, m_buf = (torch.empty(size, dtype=x.dtype, device=x.device) for _ in range(2))
    mantissa, exponent = 0.0, 0
    for start in range(0, x.numel(), chunk):
        c = x[start:start + chunk]
        chunk_mantissa, chunk_exponent = _extended_exp_sum(c, n_buf[: c.numel()], m_buf[: c.numel()])
        if mantissa == 0.0:
            mantissa, exponent = chunk_mantissa, chunk_exponent
            continue
        top = max(exponent, chunk_exponent)  # exact rescaling by powers of two: no rounding, no overflow
        mantissa = math.ldexp(mantissa, exponent - top) + math.ldexp(chunk_mantissa, chunk_exponent - top)
        exponent = top
    # The shift is rounded to x's dtype so that x - shift is exact near the top; the rounding is folded into scale.
    shift = torch.tensor(exponent * math.log(2.0), dtype=x.dtype).item()
    scale = math.exp(shift - exponent * math.log(2.0)) / mantissa
    _write_pass(x, out, shift, scale, chunk)
    return out


def torch_softmax(x: Tensor, out: Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """torch.softmax (ATen's vectorized kernel: max pass, exp-and-sum pass storing exp, scale pass). One row
    of a 1-D softmax runs on one thread: ATen parallelizes over rows."""
    _check_vector(x, chunk)
    if out is None:
        return torch.softmax(x, dim=0)
    return torch.softmax(x, dim=0, out=_output(x, out))  # type: ignore[call-overload]


SOFTMAXES = {"three_pass": three_pass_softmax, "three_pass_stored": three_pass_stored_softmax,
             "online": online_softmax, "two_pass": two_pass_softmax, "torch": torch_softmax}


def torch_calls(impl: str, n: int, chunk: int) -> int:
    """torch calls one softmax makes (each pays Python and dispatch overhead): per-chunk calls times chunks plus
    the whole-vector calls, counted from the code above."""
    if impl not in SOFTMAXES:
        raise ValueError(f"unknown softmax implementation {impl!r}; known: {', '.join(SOFTMAXES)}")
    chunks = -(-n // chunk)
    return _CALLS_PER_CHUNK.get(impl, 0) * chunks + _WHOLE_CALLS[impl] + 1  # + 1: the output's allocation


def workspace_bytes(impl: str, n: int, chunk: int, element_bytes: int) -> int:
    """Temporaries beyond input and output: chunk-sized scratch buffers (none for the stored variant)."""
    buffers = {"three_pass": 1, "online": 1, "two_pass": 2}.get(impl, 0)
    return buffers * min(chunk, n) * element_bytes
