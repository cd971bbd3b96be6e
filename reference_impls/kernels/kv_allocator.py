"""KV-cache allocators: where a request's keys and values live, and how much memory that costs beyond the tokens.

WHY: the KV cache of a request grows one token per decode step to a length nobody knows in advance. How memory
is handed out decides how much of it holds tokens, and so how many requests fit (PagedAttention's and
vAttention's argument). Each allocator here keeps real bookkeeping (free lists, block tables, page maps,
reference counts) and counts its allocation operations; the simulator (kv_simulator) drives them.

  StaticAllocator          reserves max_seq_len tokens per request at admission, as serving systems did
                           before vLLM (FasterTransformer, Orca): nothing grows, most of it may never be used.
  PagedAllocator           vLLM's PagedAttention: fixed blocks of `block_size` tokens from a free list, one more
                           whenever the request's last block is full; waste < one block per request.
  SharedPrefixPagedAllocator  the same, with the full blocks of a shared system prompt stored once and reference
                           counted (copy-on-write: the prompt's partial last block is private to each request,
                           which is what copying it on the first write would make it).
  VirtualAllocator         vAttention: each request reserves virtually contiguous space for max_seq_len per KV
                           buffer (K and V of every layer: `kv_buffers` of them) and maps physical pages of
                           `page_bytes` into every buffer as it grows. Virtual space costs no memory; a page
                           holds page_bytes / (bytes_per_token / kv_buffers) tokens of one buffer.

Units: a token's KV (all layers, K and V) is `bytes_per_token` bytes. All sizes are Python ints (exact).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KVMemory:
    """The KV pool and the model shape that sets its granularity."""

    memory_bytes: int  # bytes available for KV (device memory minus weights and workspace)
    bytes_per_token: int  # KV bytes one token adds over all layers (Llama-3.1-8B bf16: 131072)
    max_seq_len: int  # longest request (prompt + output) and the static reservation

    def __post_init__(self) -> None:
        if self.memory_bytes < 1 or self.bytes_per_token < 1 or self.max_seq_len < 1:
            raise ValueError(f"memory_bytes, bytes_per_token and max_seq_len must be >= 1: {self}")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class KVAllocator:
    """What the scheduler needs: admit or grow a request (all or nothing), release it, and the books.

    `allocated_bytes` is physical memory held (shared blocks once); `capacity(rid)` the tokens the request can
    hold before it needs another allocation; `duplicate_tokens()` the tokens that several requests count but
    memory holds once (shared prefixes); `alloc_ops` the allocation operations made so far.
    """

    name = "base"

    def __init__(self, memory: KVMemory) -> None:
        self.memory = memory
        self.allocated_bytes = 0
        self.alloc_ops = 0

    def admit(self, rid: int, tokens: int, prefix_group: int = -1, prefix_tokens: int = 0) -> bool:
        raise NotImplementedError

    def grow(self, rid: int, tokens: int) -> bool:
        raise NotImplementedError

    def release(self, rid: int) -> None:
        raise NotImplementedError

    def capacity(self, rid: int) -> int:
        raise NotImplementedError

    def duplicate_tokens(self) -> int:
        return 0

    def fits_alone(self, tokens: int, prefix_tokens: int = 0) -> bool:
        """Whether a request of `tokens` tokens fits in an empty pool (else no schedule can ever finish it)."""
        raise NotImplementedError


class StaticAllocator(KVAllocator):
    """max_seq_len tokens reserved per request at admission: one allocation, no growth."""

    name = "static"

    def __init__(self, memory: KVMemory) -> None:
        super().__init__(memory)
        self.slot_bytes = memory.max_seq_len * memory.bytes_per_token
        self.free_slots = list(range(memory.memory_bytes // self.slot_bytes))[::-1]
        self.slot_of: dict[int, int] = {}

    def admit(self, rid: int, tokens: int, prefix_group: int = -1, prefix_tokens: int = 0) -> bool:
        if tokens > self.memory.max_seq_len:
            raise ValueError(f"request {rid} needs {tokens} tokens > max_seq_len {self.memory.max_seq_len}")
        if not self.free_slots:
            return False
        self.slot_of[rid] = self.free_slots.pop()
        self.allocated_bytes += self.slot_bytes
        self.alloc_ops += 1
        return True

    def grow(self, rid: int, tokens: int) -> bool:
        if tokens > self.memory.max_seq_len:
            raise ValueError(f"request {rid} grew to {tokens} tokens > max_seq_len {self.memory.max_seq_len}")
        return True

    def release(self, rid: int) -> None:
        self.free_slots.append(self.slot_of.pop(rid))
        self.allocated_bytes -= self.slot_bytes

    def capacity(self, rid: int) -> int:
        return self.memory.max_seq_len

    def fits_alone(self, tokens: int, prefix_tokens: int = 0) -> bool:
        return tokens <= self.memory.max_seq_len <= self.memory.memory_bytes // self.memory.bytes_per_token


class PagedAllocator(KVAllocator):
    """Blocks of `block_size` tokens from a free list; a block table per request."""

    name = "paged"

    def __init__(self, memory: KVMemory, block_size: int = 16) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1 token, got {block_size}")
        super().__init__(memory)
        self.block_size = block_size
        self.block_bytes = block_size * memory.bytes_per_token
        self.total_blocks = memory.memory_bytes // self.block_bytes
        self.free_blocks = list(range(self.total_blocks))[::-1]
        self.tables: dict[int, list[int]] = {}

    def _take(self, count: int) -> list[int] | None:
        if count > len(self.free_blocks):
            return None
        taken = [self.free_blocks.pop() for _ in range(count)]
        self.allocated_bytes += count * self.block_bytes
        self.alloc_ops += count
        return taken

    def _give_back(self, blocks: list[int]) -> None:
        self.free_blocks.extend(reversed(blocks))
        self.allocated_bytes -= len(blocks) * self.block_bytes

    def admit(self, rid: int, tokens: int, prefix_group: int = -1, prefix_tokens: int = 0) -> bool:
        blocks = self._take(_ceil_div(tokens, self.block_size))
        if blocks is None:
            return False
        self.tables[rid] = blocks
        return True

    def grow(self, rid: int, tokens: int) -> bool:
        table = self.tables[rid]
        more = self._take(max(0, _ceil_div(tokens, self.block_size) - len(table)))
        if more is None:
            return False
        table.extend(more)
        return True

    def release(self, rid: int) -> None:
        self._give_back(self.tables.pop(rid))

    def capacity(self, rid: int) -> int:
        return len(self.tables[rid]) * self.block_size

    def fits_alone(self, tokens: int, prefix_tokens: int = 0) -> bool:
        return _ceil_div(tokens, self.block_size) <= self.total_blocks


class SharedPrefixPagedAllocator(PagedAllocator):
    """Paged, with the full blocks of each shared system prompt held once and reference counted."""

    name = "paged_shared"

    def __init__(self, memory: KVMemory, block_size: int = 16) -> None:
        super().__init__(memory, block_size)
        self.group_blocks: dict[int, list[int]] = {}  # live prefix group -> its shared blocks
        self.group_users: dict[int, int] = {}  # live prefix group -> requests referencing it
        self.group_of: dict[int, int] = {}  # request -> prefix group
        self.shared_of: dict[int, int] = {}  # request -> tokens it holds in shared blocks

    def admit(self, rid: int, tokens: int, prefix_group: int = -1, prefix_tokens: int = 0) -> bool:
        shared_blocks = prefix_tokens // self.block_size if prefix_group >= 0 else 0
        if not shared_blocks:
            return super().admit(rid, tokens)
        new_group = prefix_group not in self.group_blocks
        private = _ceil_div(tokens - shared_blocks * self.block_size, self.block_size)
        if private + (shared_blocks if new_group else 0) > len(self.free_blocks):
            return False
        if new_group:
            self.group_blocks[prefix_group] = self._take(shared_blocks) or []
            self.group_users[prefix_group] = 0
        self.group_users[prefix_group] += 1
        self.group_of[rid], self.shared_of[rid] = prefix_group, shared_blocks * self.block_size
        self.tables[rid] = self._take(private) or []
        return True

    def grow(self, rid: int, tokens: int) -> bool:
        return super().grow(rid, tokens - self.shared_of.get(rid, 0))

    def release(self, rid: int) -> None:
        super().release(rid)
        group = self.group_of.pop(rid, None)
        self.shared_of.pop(rid, None)
        if group is None:
            return
        self.group_users[group] -= 1
        if self.group_users[group] == 0:
            del self.group_users[group]
            self._give_back(self.group_blocks.pop(group))

    def capacity(self, rid: int) -> int:
        return super().capacity(rid) + self.shared_of.get(rid, 0)

    def duplicate_tokens(self) -> int:
        return sum((users - 1) * len(self.group_blocks[g]) * self.block_size for g, users in self.group_users.items())

    def fits_alone(self, tokens: int, prefix_tokens: int = 0) -> bool:
        return _ceil_div(tokens, self.block_size) <= self.total_blocks  # shared + private blocks = the same count


class VirtualAllocator(KVAllocator):
    """vAttention: virtual reservation per request, physical pages mapped into each of `kv_buffers` buffers."""

    name = "virtual"

    def __init__(self, memory: KVMemory, page_bytes: int = 64 * 1024, kv_buffers: int = 64) -> None:
        super().__init__(memory)
        if kv_buffers < 1 or memory.bytes_per_token % kv_buffers:
            raise ValueError(f"bytes_per_token {memory.bytes_per_token} must split evenly into kv_buffers "
                             f"{kv_buffers} (K and V of each layer)")
        per_buffer = memory.bytes_per_token // kv_buffers
        if page_bytes < per_buffer:
            raise ValueError(f"page_bytes {page_bytes} is smaller than one token of one buffer ({per_buffer} B)")
        self.kv_buffers = kv_buffers
        self.tokens_per_page = page_bytes // per_buffer
        self.group_bytes = page_bytes * kv_buffers  # one page in every buffer: what a step of growth maps
        self.total_groups = memory.memory_bytes // self.group_bytes
        self.free_pages = list(range(self.total_groups * kv_buffers))[::-1]  # physical page frames
        self.page_maps: dict[int, list[list[int]]] = {}  # request -> per page index: the frame in each buffer

    def _map(self, rid: int, page_groups: int) -> bool:
        if page_groups * self.kv_buffers > len(self.free_pages):
            return False
        maps = self.page_maps.setdefault(rid, [])
        for _ in range(page_groups):
            maps.append([self.free_pages.pop() for _ in range(self.kv_buffers)])
        self.allocated_bytes += page_groups * self.group_bytes
        self.alloc_ops += page_groups * self.kv_buffers  # one map call per page per buffer
        return True

    def admit(self, rid: int, tokens: int, prefix_group: int = -1, prefix_tokens: int = 0) -> bool:
        if tokens > self.memory.max_seq_len:
            raise ValueError(f"request {rid} needs {tokens} tokens > its virtual reservation {self.memory.max_seq_len}")
        return self._map(rid, _ceil_div(tokens, self.tokens_per_page))

    def grow(self, rid: int, tokens: int) -> bool:
        have = len(self.page_maps.get(rid, []))
        return self._map(rid, max(0, _ceil_div(tokens, self.tokens_per_page) - have))

    def release(self, rid: int) -> None:
        maps = self.page_maps.pop(rid)
        for frames in reversed(maps):
            self.free_pages.extend(reversed(frames))
        self.allocated_bytes -= len(maps) * self.group_bytes

    def capacity(self, rid: int) -> int:
        return len(self.page_maps[rid]) * self.tokens_per_page

    def fits_alone(self, tokens: int, prefix_tokens: int = 0) -> bool:
        return tokens <= self.memory.max_seq_len and _ceil_div(tokens, self.tokens_per_page) <= self.total_groups


ALLOCATORS = ("static", "paged", "paged_shared", "virtual")


def make_allocator(name: str, memory: KVMemory, block_size: int = 16, page_bytes: int = 64 * 1024,
                   kv_buffers: int = 64) -> KVAllocator:
    """An allocator by name; block_size applies to the paged ones, page_bytes and kv_buffers to virtual."""
    if name == "static":
        return StaticAllocator(memory)
    if name == "paged":
        return PagedAllocator(memory, block_size)
    if name == "paged_shared":
        return SharedPrefixPagedAllocator(memory, block_size)
    if name == "virtual":
        return VirtualAllocator(memory, page_bytes, kv_buffers)
    raise ValueError(f"unknown allocator {name!r}; known: {', '.join(ALLOCATORS)}")
