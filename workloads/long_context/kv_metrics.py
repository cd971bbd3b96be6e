"""KV-cache byte metrics shared by the decode, compression and passkey workloads, declared once here."""

from __future__ import annotations

from harness.metrics import declare

KV_CLAIMED = declare("kv_claimed_bytes", "B", "lower", "KV bytes the method claims", deterministic=True)
KV_ALLOCATED = declare("kv_allocated_bytes", "B", "lower", "KV bytes the implementation holds", deterministic=True)
KV_BYTES_READ = declare("kv_bytes_read_per_step", "B", "lower", "KV cache bytes read per decode step",
                        deterministic=True)
