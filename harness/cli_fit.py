"""`membench fit CONFIG --device pi5 --format int4 --context 4096`: the fit planner as a table (markdown).

The edge family's planner (reference_impls/edge/fit_planner.py) behind a CLI command, as cli_hardware puts the
hardware models behind `model`. Each option may repeat, and every combination becomes one row.
"""

from __future__ import annotations

import click

from reference_impls.edge import fit_planner
from reference_impls.hardware.devices import get_device
from reference_impls.hardware.transformer import load_config

DEVICE_SHORTHANDS = {"pi5": "raspberry-pi-5-8gb", "pi5-8gb": "raspberry-pi-5-8gb", "pi5-4gb": "raspberry-pi-5-4gb",
                     "orin-nano": "jetson-orin-nano-8gb-25w", "phone": "snapdragon-8-gen3-phone", "m2": "apple-m2"}
TABLE_DEVICES = ("raspberry-pi-5-8gb", "jetson-orin-nano-8gb-25w", "snapdragon-8-gen3-phone", "apple-m2")
COLUMNS = ("model", "format", "bits/w", "device", "context", "weights GB", "KV GB", "act GB", "total GB",
           "usable GB", "fits", "headroom GB", "max context", "prefill t/s*", "decode t/s*")


def plan_rows(models: list[str], formats: list[str], devices: list[str], context: int, batch: int = 1,
              index_mb: float = 0.0) -> list[dict]:
    """One row per model x format x device; ValueError names a bad model, format or device."""
    rows = []
    for model in models:
        config = load_config(model)
        for fmt in formats:
            for name in devices:
                device = get_device(DEVICE_SHORTHANDS.get(name, name))
                p = fit_planner.plan(config, device, fmt, context, batch, index_bytes=index_mb * 1e6)
                rows.append({"model": p.model, "format": fmt, "bits/w": f"{p.weight_bits:.3f}", "device": p.device,
                             "context": p.context, "weights GB": f"{p.weights_bytes / 1e9:.2f}",
                             "KV GB": f"{p.kv_bytes / 1e9:.3f}", "act GB": f"{p.activation_bytes / 1e9:.3f}",
                             "total GB": f"{p.total_bytes / 1e9:.2f}", "usable GB": f"{p.usable_bytes / 1e9:.2f}",
                             "fits": "yes" if p.fits else "no", "headroom GB": f"{p.headroom_bytes / 1e9:+.2f}",
                             "max context": f"{p.max_context:,}", "prefill t/s*": f"{p.prefill_tokens_per_s:,.0f}",
                             "decode t/s*": f"{p.decode_tokens_per_s:,.1f}"})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


@click.command("fit")
@click.argument("configs", nargs=-1, required=True)
@click.option("--device", "devices", multiple=True, default=TABLE_DEVICES, show_default=True,
              help="Device id (membench devices) or pi5, pi5-4gb, orin-nano, phone, m2. Repeatable.")
@click.option("--format", "formats", multiple=True, default=("bf16", "int8", "int4"), show_default=True,
              help="Weight format: a quantization-registry name (int4-g128-sym, nf4, ...) or int8/int4. Repeatable.")
@click.option("--context", type=click.IntRange(min=1), default=4096, show_default=True, help="Tokens per sequence.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--index-mb", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Agent-memory vector index resident beside the model, MB.")
def fit_command(configs: tuple[str, ...], devices: tuple[str, ...], formats: tuple[str, ...], context: int,
                batch: int, index_mb: float) -> None:
    """Does CONFIG fit on each device? Weights + KV + activations + runtime + index vs usable memory.

    CONFIG is a built-in name (llama-3.2-1b, qwen2.5-0.5b, llama-3.1-8b, ...) or a path to a config.json.
    Speeds (*) are modeled with the roofline per operator class on the device profile.
    """
    try:
        rows = plan_rows(list(configs), list(formats), list(devices), context, batch, index_mb)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(markdown(rows))
    rules = {fit_planner.usable_rule(get_device(DEVICE_SHORTHANDS.get(d, d))).source for d in devices}
    click.echo("\nusable memory: " + "; ".join(sorted(rules)))
    overhead = fit_planner.RUNTIME_OVERHEAD_BYTES / 1e6
    click.echo(f"runtime overhead {overhead:.0f} MB: {fit_planner.RUNTIME_OVERHEAD_SOURCE}")
