"""Edge-device techniques: fits-on-device planning, flash-offloaded FFNs, patch-based CNN inference."""
