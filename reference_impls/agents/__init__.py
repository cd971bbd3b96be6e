"""Memory stores for LLM agents: one interface, reference stores, embedders (no harness imports)."""
