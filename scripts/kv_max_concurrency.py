"""Max concurrent Llama-3.1-8B-shaped requests at 80 GB per allocator (4000 ShareGPT-like requests at once).

Run: .venv/bin/python scripts/kv_max_concurrency.py  (about 20 s on 2 cores)
"""
from reference_impls.kernels.kv_simulator import llama31_8b_on, max_concurrency
from reference_impls.kernels.request_traces import SharedPrefix, synthetic_trace

shape = llama31_8b_on(80 * 10**9)
print(f"KV pool {shape.kv_memory_bytes / 1e9:.2f} GB")
for shared in (0.0, 0.25):
    trace = synthetic_trace(4000, seed=0, model="sharegpt", rate=1e6, max_total_tokens=4096,
                            prefix=SharedPrefix(fraction=shared))
    print(f"shared_prefix={shared}", max_concurrency(trace, shape, max_seq_len=4096))
    print(f"shared_prefix={shared} 2MiB pages", max_concurrency(trace, shape, max_seq_len=4096, page_bytes=2 << 20,
                                                              allocators=("virtual",)))
