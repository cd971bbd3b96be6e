"""CLI commands over the hardware models: calibrate, devices, model."""

from __future__ import annotations

import click
from rich.table import Table

from harness import calibration
from harness.console import console, default_device, format_seconds, format_si
from harness.errors import UserError


@click.command("calibrate")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Default: cuda if available, else cpu.")
@click.option("--quick", is_flag=True, help="The short calibration `run` uses (seconds), not the full one.")
def calibrate_command(device: str | None, quick: bool) -> None:
    """Measure this machine's ceilings (bandwidths, matmul FLOP/s, links, file reads, launch overhead)."""
    device = device or default_device()
    profile = calibration.measure(device, full=not quick)
    path = calibration.save(profile)
    console.print(calibration_table(profile))
    console.print(f"profile: {path}  (membench run reuses it for {calibration.MAX_AGE_S / 3600:.0f} h)")


def calibration_table(profile: dict) -> Table:
    table = Table("ceiling", "value", title=f"{profile['name']} ({profile['device']}, {profile['mode']})")
    table.add_row("copy bandwidth (read + write)", f"{profile['copy_bytes_per_s'] / 1e9:,.1f} GB/s")
    table.add_row("read bandwidth", f"{profile['read_bytes_per_s'] / 1e9:,.1f} GB/s")
    for dtype, flops in profile["matmul_flops_per_s"].items():
        n = profile["matmul_sizes"][dtype]
        table.add_row(f"matmul {dtype} ({n}³)", f"{flops / 1e12:,.3f} TFLOP/s" if flops else "not supported")
    for key, label in (("h2d_bytes_per_s", "host → device"), ("d2h_bytes_per_s", "device → host")):
        if profile.get(key):
            table.add_row(label, f"{profile[key] / 1e9:,.1f} GB/s")
    table.add_row("launch / call overhead", f"{profile['launch_overhead_s'] * 1e6:.2f} µs")
    for row in profile["file_read"]:
        table.add_row(f"file read, {row['chunk_bytes'] // 1024:,} KiB chunks", f"{row['bytes_per_s'] / 1e9:,.2f} GB/s")
    table.add_row("file read method", profile["file_read_method"])
    return table


@click.command("devices")
def devices_command() -> None:
    """The device registry: peaks, memory tiers and power, each number with its source in devices.yaml."""
    from reference_impls.hardware.devices import load_devices

    table = Table("device", "kind", "main memory", "bandwidth", "bf16 / fp32 peak (dense)", "link", "idle–peak W",
                  title="device registry (reference_impls/hardware/devices.yaml)")
    for name, d in load_devices().items():
        main = d.tier(d.main_tier)
        peaks = " / ".join(format_si(d.peak_flops[t].value, "FLOP/s") if t in d.peak_flops else "—"
                           for t in ("bfloat16", "float32"))
        link = format_si(d.link_bandwidth_bytes_per_s.value, "B/s") if d.link_bandwidth_bytes_per_s else "—"
        power = "—" if d.idle_power_w is None else f"{d.idle_power_w.value:g}–{d.peak_power_w.value:g}"
        table.add_row(name, d.kind, f"{main.name} {format_si(main.capacity_bytes.value, 'B')}",
                      format_si(main.bandwidth_bytes_per_s.value, "B/s"), peaks, link, power)
    console.print(table)


@click.command("model")
@click.argument("config")
@click.option("--device", "device_name", required=True, help="A device id from `membench devices`.")
@click.option("--context", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Prompt length for TTFT; KV length for TPOT.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--weights", default="bf16", show_default=True, help="bf16, fp16, fp8, int8, int4, int4-g128.")
@click.option("--kv", default="bf16", show_default=True, help="KV-cache format: bf16, fp16, fp8, int8, int4.")
def model_command(config: str, device_name: str, context: int, batch: int, weights: str, kv: str) -> None:
    """Whole-model prefill and decode on a device: TTFT, TPOT, KV bytes per token, concurrency, bound per phase.

    CONFIG is a built-in name (llama-3.1-8b, llama-3.1-70b, qwen2.5-0.5b, smollm2-135m, deepseek-v3) or a path
    to a Hugging Face config.json.
    """
    from reference_impls.hardware.devices import get_device

    from reference_impls.hardware import llm_estimate, transformer

    try:
        model_config = transformer.load_config(config)
        device = get_device(device_name)
        estimate = llm_estimate.estimate_serving(model_config, llm_estimate.precision(weights, kv), device,
                                                 context, batch)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    console.print(model_table(model_config.name, estimate, weights, kv))


def model_table(name: str, e, weights: str, kv: str) -> Table:
    table = Table("", "value", title=f"{name} on {e.device}: context {e.context:,}, batch {e.batch}, "
                                     f"weights {weights}, KV {kv} (roofline per operator, summed)")
    for phase in (e.ttft, e.tpot):
        label = "TTFT (prefill)" if phase is e.ttft else "TPOT (one decode step)"
        table.add_row(label, f"{format_seconds(phase.latency_s)}  bound: {phase.bound}  "
                             f"({format_si(phase.flops, 'FLOP')}, {format_si(phase.bytes, 'B')}, "
                             f"{phase.arithmetic_intensity:.1f} FLOP/B)")
    table.add_row("weights", format_si(e.weight_bytes, "B"))
    table.add_row("KV bytes per token", f"{e.kv_bytes_per_token:,.0f} B")
    table.add_row("KV cache at this context", format_si(e.kv_bytes_per_token * e.context * e.batch, "B"))
    table.add_row("max concurrent sequences", f"{e.max_concurrency:,}")
    table.add_row("max context (one sequence)", f"{e.max_context:,} tokens")
    table.add_row("decode attention intensity", f"{e.attention_decode_intensity:.2f} FLOP/B")
    table.add_row("decode FFN intensity", f"{e.ffn_intensity:.2f} FLOP/B")
    return table


COMMANDS = (calibrate_command, devices_command, model_command)
