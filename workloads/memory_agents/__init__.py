"""Memory-agent family: LoCoMo-format conversations (loader, seeded generator) and the memory-store workloads."""
