"""An FFN whose weights live in a file on disk and are read per neuron on demand (LLM in a flash, P006).

WHY: a model larger than DRAM can still run if each token loads only the FFN neurons that fire. The file holds,
per neuron i, the up-projection row up[i] (d_model floats) and the down-projection column down[:, i] (stored as
row down_t[i]). Two layouts: "split" (all up rows, then all down_t rows: two reads per neuron) and "bundled"
(up[i] and down_t[i] contiguous: one read per neuron — row-column bundling). Policies:
  naive      every token reads all its active neurons (nothing kept between tokens), split layout
  windowing  neurons active in the last `window` tokens stay resident; a token reads only the others
             (window 0 is naive)
  bundling   naive on the bundled layout
  both       windowing on the bundled layout
Reads go through os.preadv straight into a preallocated DRAM buffer of `budget // bundle_bytes` neuron slots;
runs of consecutive neuron ids become one preadv (scattered into their slots). Before each run the file's page
cache must not serve the reads (on the device the model does not fit in DRAM, so neither does its page
cache): "direct" opens the file with O_DIRECT (needs 4 KiB-aligned rows; the default), "fadvise" drops the
file's page cache with posix_fadvise(POSIX_FADV_DONTNEED) before every token, "none" leaves the cache alone.
The output is y_t = down · (mask_t ⊙ relu(up · x_t)); the trace's mask stands for LLM in a flash's predictor.
"""

from __future__ import annotations

import mmap
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

LAYOUTS = ("split", "bundled")
POLICIES = {"naive": (False, "split"), "windowing": (True, "split"), "bundling": (False, "bundled"),
            "both": (True, "bundled")}
CACHE_MODES = ("fadvise", "direct", "none")
DIRECT_ALIGN = 4096
IOV_MAX = 1024


def write_ffn_file(path: str | os.PathLike, up: torch.Tensor, down_t: torch.Tensor, layout: str) -> int:
    """Write float32 weights [d_ff, d_model] each in `layout`; returns the file size in bytes."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if up.shape != down_t.shape or up.dim() != 2:
        raise ValueError(f"up and down_t must both be [d_ff, d_model], got {tuple(up.shape)}, {tuple(down_t.shape)}")
    up32, down32 = up.to(torch.float32).contiguous(), down_t.to(torch.float32).contiguous()
    data = torch.cat([up32, down32], dim=1) if layout == "bundled" else torch.cat([up32, down32], dim=0)
    with open(path, "wb") as handle:
        handle.write(data.numpy().tobytes())
        handle.flush()
        os.fsync(handle.fileno())  # clean pages, so POSIX_FADV_DONTNEED can drop them
    return data.numel() * 4


def dense_reference(x: torch.Tensor, up: torch.Tensor, down_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """y = (mask ⊙ relu(x upᵀ)) down_t in float64, with every weight (the answer flash loading must reproduce)."""
    h = torch.relu(x.double() @ up.double().T) * mask.double()
    return h @ down_t.double()


def page_cache_fraction(path: str | os.PathLike) -> float | None:
    """Fraction of the file's pages in the page cache (mincore on a private mapping), or None where unsupported."""
    try:
        import ctypes

        size = os.path.getsize(path)
        if size == 0:
            return 0.0
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        anchor = ctypes.c_char.from_buffer(mapped)
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), vec)
        del anchor
        mapped.close()
        return None if rc != 0 else sum(v & 1 for v in vec) / pages
    except (OSError, AttributeError, ValueError, TypeError):
        return None


@dataclass
class FlashStats:
    """What one run read and held."""

    policy: str
    tokens: int
    model_bytes: int  # the FFN file
    buffer_bytes: int  # the DRAM slot buffer allocated (the budget, rounded down to whole neurons)
    reads: int = 0  # preadv calls
    bytes_read: int = 0
    peak_resident_bytes: int = 0  # most neuron bytes resident at once
    active_neurons: int = 0  # summed over tokens
    io_s: float = 0.0  # wall time inside preadv
    total_s: float = 0.0  # wall time of the whole run (reads + compute)
    cache_mode: str = "direct"
    page_cache_before: float | None = None  # fadvise: fraction of the file cached after the first drop
    reads_per_token_list: list[int] = field(default_factory=list)

    @property
    def bytes_per_token(self) -> float:
        return self.bytes_read / self.tokens

    @property
    def reads_per_token(self) -> float:
        return self.reads / self.tokens


def _aligned_buffer(nbytes: int) -> tuple[mmap.mmap, np.ndarray]:
    """A page-aligned float32 buffer (an anonymous mapping), as O_DIRECT requires."""
    raw = mmap.mmap(-1, max(nbytes, mmap.PAGESIZE))
    return raw, np.frombuffer(raw, dtype=np.float32, count=nbytes // 4)


class FlashFFN:
    """The file, the slot buffer and the resident set; `run` serves a sequence of tokens."""

    def __init__(self, path: str | os.PathLike, d_model: int, d_ff: int, layout: str, budget_bytes: int,
                 window: int = 0, cache_mode: str = "direct") -> None:
        if layout not in LAYOUTS or cache_mode not in CACHE_MODES:
            raise ValueError(f"layout must be one of {LAYOUTS} and cache_mode one of {CACHE_MODES}; "
                             f"got {layout!r}, {cache_mode!r}")
        if window < 0:
            raise ValueError(f"window must be >= 0 tokens, got {window}")
        self.path, self.d, self.d_ff, self.layout, self.window = Path(path), d_model, d_ff, layout, window
        self.row_bytes = d_model * 4
        self.slots = budget_bytes // (2 * self.row_bytes)
        if self.slots < 1:
            raise ValueError(f"DRAM budget {budget_bytes} B holds no neuron ({2 * self.row_bytes} B each)")
        if cache_mode == "direct" and self.row_bytes % DIRECT_ALIGN:
            raise ValueError(f"O_DIRECT needs rows of a multiple of {DIRECT_ALIGN} B: d_model a multiple of "
                             f"{DIRECT_ALIGN // 4}, got {d_model}")
        self.cache_mode = cache_mode
        self.model_bytes = os.path.getsize(self.path)
        if self.model_bytes != 2 * d_ff * self.row_bytes:
            raise ValueError(f"{self.path} holds {self.model_bytes} B, expected {2 * d_ff * self.row_bytes}")
        self._raw, flat = _aligned_buffer(self.slots * 2 * self.row_bytes)
        self.buffer = flat.reshape(self.slots, 2 * d_model)

    def close(self) -> None:
        """Release the buffer now; where a view of it is still alive, the mapping goes with its last view."""
        self.buffer = None  # type: ignore[assignment]
        try:
            self._raw.close()
        except BufferError:
            pass

    def _offsets(self, neuron: int) -> list[tuple[int, slice]]:
        """(file offset, slot columns) of each piece of one neuron: one piece bundled, two split."""
        if self.layout == "bundled":
            return [(neuron * 2 * self.row_bytes, slice(0, 2 * self.d))]
        return [(neuron * self.row_bytes, slice(0, self.d)),
                ((self.d_ff + neuron) * self.row_bytes, slice(self.d, 2 * self.d))]

    def _load(self, fd: int, neurons: list[int], slot_of: dict[int, int], stats: FlashStats) -> int:
        """Read `neurons` (sorted) into their slots; consecutive ids share one preadv per piece. Returns reads."""
        reads = 0
        runs: list[list[int]] = []
        for n in neurons:
            if runs and n == runs[-1][-1] + 1 and len(runs[-1]) < IOV_MAX:
                runs[-1].append(n)
            else:
                runs.append([n])
        for run in runs:
            for offset, cols in self._offsets(run[0]):
                views = [memoryview(self.buffer[slot_of[n], cols]) for n in run]
                started = time.perf_counter()
                got = os.preadv(fd, views, offset)
                stats.io_s += time.perf_counter() - started
                expected = len(run) * (cols.stop - cols.start) * 4
                if got != expected:
                    raise OSError(f"short read from {self.path}: {got} of {expected} B at offset {offset}")
                stats.bytes_read += got
                reads += 1
        stats.reads += reads
        return reads

    def run(self, x: torch.Tensor, mask: torch.Tensor, policy: str) -> tuple[torch.Tensor, FlashStats]:
        """Serve tokens x [T, d_model] with active sets mask [T, d_ff]; returns y [T, d_model] float32 and stats."""
        keep, layout = POLICIES[policy]
        if layout != self.layout:
            raise ValueError(f"policy {policy!r} reads the {layout} layout, this file is {self.layout}")
        flags = os.O_RDONLY | (os.O_DIRECT if self.cache_mode == "direct" else 0)
        stats = FlashStats(policy, x.shape[0], self.model_bytes, self.buffer.nbytes, cache_mode=self.cache_mode)
        started = time.perf_counter()
        fd = os.open(self.path, flags)
        try:
            if self.cache_mode == "fadvise":
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                stats.page_cache_before = page_cache_fraction(self.path)
            y = self._serve(fd, x.to(torch.float32), mask, keep, stats)
        finally:
            os.close(fd)
        stats.total_s = time.perf_counter() - started
        return y, stats

    def _serve(self, fd: int, x: torch.Tensor, mask: torch.Tensor, keep: bool, stats: FlashStats) -> torch.Tensor:
        weights = torch.from_numpy(self.buffer)
        slot_of: dict[int, int] = {}
        last_active: dict[int, int] = {}
        free = list(range(self.slots - 1, -1, -1))
        y = torch.empty(x.shape[0], self.d, dtype=torch.float32)
        for t in range(x.shape[0]):
            active = mask[t].nonzero().squeeze(1).tolist()
            if len(active) > self.slots:
                raise ValueError(f"token {t} has {len(active)} active neurons; the DRAM budget holds {self.slots}")
            active_set = set(active)
            for n in list(slot_of):  # evict everything (no window), or what was idle the last `window` tokens
                if not keep or last_active[n] < t - self.window:
                    free.append(slot_of.pop(n))
            missing = [n for n in active if n not in slot_of]
            if self.cache_mode == "fadvise" and t:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if len(missing) > len(free):  # window larger than the budget: evict least recently active
                idle = sorted((last_active[n], n) for n in slot_of if n not in active_set)
                for _, n in idle[:len(missing) - len(free)]:
                    free.append(slot_of.pop(n))
            for n in missing:
                slot_of[n] = free.pop()
            stats.reads_per_token_list.append(self._load(fd, missing, slot_of, stats))
            for n in active:
                last_active[n] = t
            stats.peak_resident_bytes = max(stats.peak_resident_bytes, len(slot_of) * 2 * self.row_bytes)
            stats.active_neurons += len(active)
            rows = weights[torch.tensor([slot_of[n] for n in active], dtype=torch.long)]
            h = torch.relu(rows[:, :self.d] @ x[t])
            y[t] = h @ rows[:, self.d:]
        return y


def direct_io_problem(folder: str | os.PathLike) -> str | None:
    """Why O_DIRECT reads do not work in `folder` (tmpfs, no O_DIRECT on this OS), or None when they do."""
    if not hasattr(os, "O_DIRECT"):
        return "this OS has no O_DIRECT"
    probe = Path(folder) / ".o_direct_probe"
    raw, buffer = _aligned_buffer(DIRECT_ALIGN)
    try:
        probe.write_bytes(b"\1" * DIRECT_ALIGN)
        fd = os.open(probe, os.O_RDONLY | os.O_DIRECT)
        try:
            os.preadv(fd, [memoryview(buffer)], 0)
        finally:
            os.close(fd)
        return None
    except OSError as exc:
        return f"O_DIRECT reads fail in {folder}: {exc}"
    finally:
        del buffer
        raw.close()
        probe.unlink(missing_ok=True)
