"""Weight quantization formats on one scale: packed codes, every stored byte counted, an error bound per format.

`formats` is the registry (get_format / quantize / dequantize by canonical name); `qtensor.QTensor` is what every
format returns; `packing` and `grouping` are the shared bit-packing and per-group helpers (KIVI uses them too).
Imports nothing from the benchmark harness.
"""
