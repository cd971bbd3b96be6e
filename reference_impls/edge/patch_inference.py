"""Patch-based inference of a CNN's memory-heavy initial stage (MCUNetV2, P027) vs layer-by-layer.

WHY: the first stage of a MobileNetV2 at full resolution holds the largest activations of the network (block 2's
6x expansion at 112x112), which decides whether it fits a microcontroller's SRAM. Patch-based inference runs the
stage on one spatial tile of its output at a time, recomputing the receptive-field halo each tile needs, and
writes into the stage's output buffer: the peak drops to one tile's activations plus that buffer.

The stage is stem conv3x3/s2 (+ReLU6) then inverted-residual blocks (1x1 expand + ReLU6, 3x3 depthwise + ReLU6,
1x1 project; residual when stride 1 and channels equal). Zero padding belongs to the input of each 3x3 conv, so
a tile pads only where its region crosses the feature-map border. Live activation elements are tracked as
tensors are created and freed (weakref finalizers), the input image excluded (it is the given input buffer).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# (expansion t, output channels c, stride s) of MobileNetV2's first inverted-residual blocks (Sandler et al. 2018)
MBV2_BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1))


@dataclass(frozen=True)
class Block:
    """One 3x3 conv (the stem, or a block's depthwise) with its 1x1 maps; spatial shape changes only here."""

    cin: int
    hidden: int  # channels the 3x3 conv works on (= cin without an expansion)
    cout: int
    stride: int
    stem: bool = False

    @property
    def residual(self) -> bool:
        return not self.stem and self.stride == 1 and self.cin == self.cout


def mobilenet_v2_stage(blocks: int = 4, width: float = 1.0) -> list[Block]:
    """The stem plus the first `blocks` inverted-residual blocks, channels scaled by `width` (multiples of 8)."""
    if not 0 <= blocks <= len(MBV2_BLOCKS) or width <= 0:
        raise ValueError(f"blocks must be in 0..{len(MBV2_BLOCKS)} and width > 0, got {blocks}, {width}")

    def scaled(c: int) -> int:
        return max(8, int(c * width + 4) // 8 * 8)

    stem_out = scaled(32)
    stage, cin = [Block(3, 3, stem_out, 2, stem=True)], stem_out
    for t, c, s in MBV2_BLOCKS[:blocks]:
        stage.append(Block(cin, cin * t, scaled(c), s))
        cin = scaled(c)
    return stage


def init_weights(stage: list[Block], seed: int, dtype: torch.dtype = torch.float32) -> list[dict]:
    """He-scaled random weights and small biases per block (BatchNorm folded away), seeded."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, fan_in: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5).to(dtype)

    weights = []
    for b in stage:
        w: dict = {"bias3": (torch.randn(b.hidden if not b.stem else b.cout, generator=g) * 0.1).to(dtype)}
        if b.stem:
            w["conv3"] = rand(b.cout, 3, 3, 3, fan_in=27)
        else:
            if b.hidden != b.cin:
                w["expand"], w["bias_e"] = rand(b.hidden, b.cin, 1, 1, fan_in=b.cin), rand(b.hidden, fan_in=100)
            w["conv3"] = rand(b.hidden, 1, 3, 3, fan_in=9)
            w["project"], w["bias_p"] = rand(b.cout, b.hidden, 1, 1, fan_in=b.hidden), rand(b.cout, fan_in=100)
        weights.append(w)
    return weights


class LiveTracker:
    """Elements of the tracked tensors alive now, and the most alive at once."""

    def __init__(self) -> None:
        self.live, self.peak = 0, 0

    def track(self, tensor: torch.Tensor) -> torch.Tensor:
        n = tensor.numel()
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._free, n)
        return tensor

    def _free(self, n: int) -> None:
        self.live -= n


def _block(x: torch.Tensor, b: Block, w: dict, pad: tuple[int, int, int, int], live: LiveTracker,
           residual: torch.Tensor | None) -> torch.Tensor:
    """One block on a region: expand, zero-pad (left, right, top, bottom), 3x3 conv, project, add the residual."""
    h = x
    if "expand" in w:
        h = live.track(F.conv2d(x, w["expand"], w["bias_e"]).clamp_(0, 6))
    symmetric = pad[0] if len(set(pad)) == 1 else 0  # conv2d pads symmetric borders without a copy
    if any(pad) and not symmetric:
        h = live.track(F.pad(h, pad))
    groups = 1 if b.stem else b.hidden
    h = live.track(F.conv2d(h, w["conv3"], w["bias3"], stride=b.stride, padding=symmetric,
                            groups=groups).clamp_(0, 6))
    if b.stem:
        return h
    out = live.track(F.conv2d(h, w["project"], w["bias_p"]))
    del h
    if residual is not None:
        out.add_(residual)
    return out


def output_size(stage: list[Block], size: int) -> int:
    for b in stage:
        size = (size + 2 - 3) // b.stride + 1
    return size


def run_layers(x: torch.Tensor, stage: list[Block], weights: list[dict], live: LiveTracker) -> torch.Tensor:
    """Layer by layer over the whole feature map (padding 1 on every 3x3 conv)."""
    h = x
    for b, w in zip(stage, weights, strict=True):
        h = _block(h, b, w, (1, 1, 1, 1), live, h if b.residual else None)
    return h


def _needed(stage: list[Block], sizes: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """Per block (first to last): the input range [a, b) it needs (may cross the border) for outputs [lo, hi)."""
    needs = []
    for b, size_in in zip(reversed(stage), reversed(sizes[:-1]), strict=True):
        a, z = lo * b.stride - 1, (hi - 1) * b.stride - 1 + 3
        needs.append((a, z))
        lo, hi = max(0, a), min(size_in, z)
    return needs[::-1]


def tiles(size: int, patches: int) -> list[tuple[int, int]]:
    """`patches` near-equal ranges covering 0..size (ragged sizes welcome)."""
    if not 1 <= patches <= size:
        raise ValueError(f"patches must be in 1..{size} (the stage's output size), got {patches}")
    edges = [size * i // patches for i in range(patches + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def run_patches(x: torch.Tensor, stage: list[Block], weights: list[dict], patches: int,
                live: LiveTracker) -> torch.Tensor:
    """Patch by patch: each of patches x patches output tiles computed from its own input region."""
    sizes = [x.shape[-1]]
    for b in stage:
        sizes.append(output_size([b], sizes[-1]))
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"square inputs only, got {tuple(x.shape[-2:])}")
    out = live.track(torch.empty(x.shape[0], stage[-1].cout, sizes[-1], sizes[-1], dtype=x.dtype))
    for r0, r1 in tiles(sizes[-1], patches):
        rows = _needed(stage, sizes, r0, r1)
        for c0, c1 in tiles(sizes[-1], patches):
            cols = _needed(stage, sizes, c0, c1)
            (ra, rz), (ca, cz) = rows[0], cols[0]
            h = x[..., max(0, ra):min(sizes[0], rz), max(0, ca):min(sizes[0], cz)]
            for i, (b, w) in enumerate(zip(stage, weights, strict=True)):
                (ra, rz), (ca, cz), n = rows[i], cols[i], sizes[i]
                pad = (max(0, -ca), max(0, cz - n), max(0, -ra), max(0, rz - n))
                residual = None
                if b.residual:  # outputs [a+1, z-1) in this block's input coordinates, clipped
                    top, left = ra + 1 - max(0, ra), ca + 1 - max(0, ca)
                    rows_out, cols_out = min(rz - 1, n) - max(0, ra + 1), min(cz - 1, n) - max(0, ca + 1)
                    residual = h[..., top:top + rows_out, left:left + cols_out]
                h = _block(h, b, w, pad, live, residual)
            out[..., r0:r1, c0:c1] = h
            del h
    return out


def _sizes(stage: list[Block], size: int) -> list[int]:
    """Feature-map side before each block and after the last."""
    sizes = [size]
    for b in stage:
        sizes.append(output_size([b], sizes[-1]))
    return sizes


@dataclass(frozen=True)
class Region:
    """What one block of one tile works on: its in-bounds input, the zero padding around it, its output."""

    in_rows: int
    in_cols: int
    pad: tuple[int, int, int, int]  # left, right, top, bottom
    out_rows: int
    out_cols: int


def regions(stage: list[Block], size: int, patches: int | None) -> list[list[Region]]:
    """Per tile (row-major), per block, the Region; `patches` None is layer by layer (one tile, padding 1)."""
    sizes = _sizes(stage, size)
    if patches is None:
        return [[Region(n, n, (1, 1, 1, 1), m, m) for n, m in zip(sizes[:-1], sizes[1:], strict=True)]]
    out = []
    for r0, r1 in tiles(sizes[-1], patches):
        rows = _needed(stage, sizes, r0, r1)
        for c0, c1 in tiles(sizes[-1], patches):
            cols = _needed(stage, sizes, c0, c1)
            tile = []
            for i, n in enumerate(sizes[:-1]):
                (ra, rz), (ca, cz) = rows[i], cols[i]
                # this block's output is the next block's in-bounds input (the tile itself after the last)
                out_r = rows[i + 1] if i + 1 < len(stage) else (r0, r1)
                out_c = cols[i + 1] if i + 1 < len(stage) else (c0, c1)
                m = sizes[i + 1]
                tile.append(Region(min(n, rz) - max(0, ra), min(n, cz) - max(0, ca),
                                   (max(0, -ca), max(0, cz - n), max(0, -ra), max(0, rz - n)),
                                   min(m, out_r[1]) - max(0, out_r[0]), min(m, out_c[1]) - max(0, out_c[0])))
            out.append(tile)
    return out


def stage_flops(stage: list[Block], size: int, patches: int | None = None) -> float:
    """FLOPs (2 per multiply-add) of the stage: layer by layer, or summed over tiles with their halos."""
    total = 0.0
    for tile in regions(stage, size, patches):
        for b, r in zip(stage, tile, strict=True):
            out, inp = r.out_rows * r.out_cols, r.in_rows * r.in_cols
            if b.stem:
                total += 2 * out * b.cout * 27
                continue
            total += 2 * inp * b.cin * b.hidden if b.hidden != b.cin else 0
            total += 2 * out * b.hidden * 9 + 2 * out * b.hidden * b.cout
    return total


def analytic_peak(stage: list[Block], size: int, patches: int | None = None) -> int:
    """Peak live elements of run_layers / run_patches, derived from the shapes (the image excluded): within a
    block, input + expanded + (padded copy) + depthwise output, then input + depthwise output + projection."""
    sizes = _sizes(stage, size)
    buffer = 0 if patches is None else stage[-1].cout * sizes[-1] ** 2
    peak = 0
    for tile in regions(stage, size, patches):
        for b, r in zip(stage, tile, strict=True):
            held = 0 if b.stem else b.cin * r.in_rows * r.in_cols  # the block input (the image is not counted)
            width = b.cout if b.stem else b.hidden
            expanded = b.hidden * r.in_rows * r.in_cols if not b.stem and b.hidden != b.cin else 0
            copy = 0
            if any(r.pad) and len(set(r.pad)) > 1:
                copy = (b.hidden if not b.stem else 3) * (r.in_rows + r.pad[2] + r.pad[3]) * (
                    r.in_cols + r.pad[0] + r.pad[1])
            dw = width * r.out_rows * r.out_cols
            steps = [held + expanded, held + expanded + copy, held + (copy or expanded) + dw]
            if not b.stem:
                steps.append(held + dw + b.cout * r.out_rows * r.out_cols)
            peak = max(peak, buffer + max(steps))
    return peak


def mcunet_peak(stage: list[Block], size: int) -> int:
    """MCUNet's convention, layer by layer: the largest input + output of any one conv, the image included, with
    depthwise convs in place (TinyEngine): max(input, output). MobileNetV2 at 224: 16x112² + 96x112² = 1,372 KiB."""
    sizes, peak = _sizes(stage, size), 0
    for b, n, m in zip(stage, sizes[:-1], sizes[1:], strict=True):
        if b.stem:
            peak = max(peak, 3 * n * n + b.cout * m * m)
            continue
        if b.hidden != b.cin:
            peak = max(peak, b.cin * n * n + b.hidden * n * n)
        peak = max(peak, b.hidden * n * n, b.hidden * m * m + b.cout * m * m)
    return peak
