"""Edge family: fits-on-device planning, flash-offloaded FFNs (LLM in a flash), patch-based CNN inference (MCUNetV2)."""
