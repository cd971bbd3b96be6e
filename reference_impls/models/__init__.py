"""Real (small) models for long-context workloads: loading without the network, and decoding from a KV cache a
compression policy rewrote."""
