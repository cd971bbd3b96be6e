"""memory_crossover: at what history length does putting the whole history in the prompt stop paying?

For a ladder of history lengths (10 turns up to `turns`), each store is built from a seeded history and
searched with the questions: the mean tokens it injects per query, and its measured search p50. The hardware
model (transformer.prefill_cost -> llm_estimate.estimate_phase, the per-operator roofline; energy_model for
joules) then gives the *modeled* prefill latency and energy per query on `device` for `config`:

  full context   prefill(history tokens + question tokens)
  store          prefill(hit tokens + question tokens) + the store's search p50

The store's search latency is MEASURED on this machine's CPU (the host that would run the memory) and added to
its modeled prefill; the energy side models prefill only (search energy on the host is not modeled). Nothing
here measures the accelerator. The crossover is the history length (turns) above which full context is the
slower (or costlier) choice, interpolated linearly between the two ladder points around the sign change; it is
absent, not zero, when full context stays cheaper over the whole ladder (the full_context store itself).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.agents.store import store_names
from reference_impls.hardware.devices import get_device, load_devices
from reference_impls.hardware.energy_model import predict_energy
from reference_impls.hardware.llm_estimate import estimate_phase
from reference_impls.hardware.transformer import Precision, builtin_configs, load_config, prefill_cost
from workloads.memory_agents import agent_metrics
from workloads.memory_agents.locomo import count_tokens
from workloads.memory_agents.memory_retrieval import store_unavailable
from workloads.memory_agents.memory_runs import (
    HISTORY_PARAMS,
    History,
    history_tokens,
    load_history,
    prepared,
    threads_missing,
)
from workloads.memory_agents.synthetic_history import generate
from workloads.memory_agents.tokens import tokenizer_missing

assert agent_metrics
LADDER = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
DTYPE = "bfloat16"


def ladder(turns: int) -> tuple[int, ...]:
    return tuple(sorted({n for n in LADDER if n < turns} | {turns}))


@dataclass(frozen=True)
class LadderPoint:
    turns: int
    history_tokens: float  # full-context prompt: history + mean question tokens
    store_tokens: float  # store prompt: mean hit tokens + mean question tokens
    search_s: float  # measured search p50 on this CPU
    full_s: float
    store_s: float  # modeled prefill + measured search
    full_j: float
    store_j: float


@dataclass(frozen=True)
class CrossoverAnswer:
    store: str
    device: str
    config: str
    points: tuple[LadderPoint, ...]
    crossover_latency: float | None
    crossover_energy: float | None


@cache
def prefill_model(config: str, device: str, tokens: int) -> tuple[float, float]:
    """(modeled prefill seconds, modeled joules) of one `tokens`-token prompt, batch 1, bf16 weights and KV."""
    dev = get_device(device)
    cost = prefill_cost(load_config(config), Precision(), max(1, tokens))
    latency = estimate_phase(cost, dev, DTYPE).latency_s
    energy = predict_energy(dev, cost.flops, {"dram": cost.bytes}, DTYPE, latency)
    return latency, energy.total_j if energy is not None else float("nan")


def crossing(points: tuple[LadderPoint, ...], full: str, store: str) -> float | None:
    """Turns where full - store turns positive (linear between ladder points); None when it never does."""
    previous = None
    for p in points:
        gap = getattr(p, full) - getattr(p, store)
        if gap > 0:
            if previous is None:
                return float(p.turns)
            q, q_gap = previous
            return q.turns + (p.turns - q.turns) * (-q_gap) / (gap - q_gap)
        previous = (p, gap)
    return None


def model_points(measured: list[tuple[int, float, float, float]], config: str, device: str) -> tuple:
    """(turns, history tokens, store tokens, search s) -> modeled ladder points."""
    out = []
    for turns, full_tokens, store_tokens, search_s in measured:
        full_s, full_j = prefill_model(config, device, round(full_tokens))
        store_s, store_j = prefill_model(config, device, round(store_tokens))
        out.append(LadderPoint(turns, full_tokens, store_tokens, search_s, full_s, store_s + search_s, full_j,
                               store_j))
    return tuple(out)


def generate_up_to(turns: int, questions: int, seed: int):
    """A seeded history with as many of `questions` as a history this short supports (halving until it fits)."""
    while True:
        try:
            return generate(turns, questions, seed)
        except ValueError:
            if questions <= 1:
                raise
            questions //= 2


def measure_ladder(store: str, params: dict, seed: int, history: History) -> list:
    """One retrieval pass per ladder length (cached on the inputs: the first call does it)."""
    key = ("ladder", store)
    if key not in history.built:
        rows = []
        for n in ladder(params["turns"]):
            sub = History((generate_up_to(n, params["questions"], seed),))
            built = prepared(sub, store, params["k"], params["tokenizer"], params["threads"])
            question_tokens = [count_tokens(sub.conversations[0].qa[o.question].question) for o in built.outcomes]
            mean_q = sum(question_tokens) / len(question_tokens)
            rows.append((n, history_tokens(sub.conversations[0], params["tokenizer"]) + mean_q,
                         sum(o.tokens for o in built.outcomes) / len(built.outcomes) + mean_q,
                         sorted(o.latency_ns for o in built.outcomes)[len(built.outcomes) // 2] / 1e9))
            for s in built.stores:
                s.close()
        history.built[key] = rows
    return history.built[key]


@register_workload
class MemoryCrossover(Workload):
    name = "memory_crossover"
    family = "memory_agents"
    description = ("Modeled prefill latency and energy per query of full context vs each memory store's injected "
                   "tokens (plus its measured search p50) on a device profile, as the history grows: the "
                   "crossover history length in turns. Hardware model only; nothing on the accelerator is measured.")
    sweep_param = "turns"
    primary_metric = "memory.crossover_turns_latency"
    params = (*(replace(p, default=100) if p.name == "questions" else p for p in HISTORY_PARAMS
                if p.name != "data"),
              Param("device", str, "h100-sxm-80gb", choices=tuple(load_devices()), doc="device profile (devices.yaml)"),
              Param("config", str, "llama-3.1-8b", choices=builtin_configs(), doc="model config (hardware/configs)"))
    contract_params = {"turns": 200, "questions": 30}

    def inputs(self, params: dict, device: str, seed: int) -> History:
        history = load_history({**params, "data": "synthetic"}, seed)
        history.built["seed"] = seed
        return history

    def reference(self, inputs: History, params: dict) -> tuple[str, str, tuple[int, ...]]:
        return params["config"], params["device"], ladder(params["turns"])

    def cost(self, params: dict, impl: str) -> Cost:
        """The timed call evaluates the cost model at every ladder point: a few hundred float operations each."""
        points = len(ladder(params["turns"]))
        return Cost(flops=400.0 * points, bytes={"dram": 64.0 * points}, dtype="float64", hardware_bound=False)

    def check(self, output: CrossoverAnswer, reference: tuple, baseline_error: float | None) -> Check:
        config, device, turns = reference
        wrong = []
        if tuple(p.turns for p in output.points) != turns:
            wrong.append("ladder differs from the requested history lengths")
        for p in output.points:
            full = prefill_model(config, device, round(p.history_tokens))
            store = prefill_model(config, device, round(p.store_tokens))
            if (p.full_s, p.full_j, p.store_j) != (full[0], full[1], store[1]) or p.store_s != store[0] + p.search_s:
                wrong.append(f"modeled figures at {p.turns} turns disagree with the hardware model")
        if any(b.full_s <= a.full_s for a, b in zip(output.points, output.points[1:], strict=False)):
            wrong.append("full-context prefill does not grow with the history")
        for got, full, store in ((output.crossover_latency, "full_s", "store_s"),
                                 (output.crossover_energy, "full_j", "store_j")):
            if got != crossing(output.points, full, store):
                wrong.append(f"crossover {got} disagrees with the ladder")
        return Check(not wrong, float(len(wrong)), 0.0,
                     "modeled figures recompute and the crossover brackets the sign change" +
                     (f" ({wrong[0]})" if wrong else ""))

    def quality(self, output: CrossoverAnswer, reference: tuple) -> dict[str, float]:
        return {}

    def counters(self, output: CrossoverAnswer, params: dict) -> dict[str, float]:
        last = output.points[-1]
        out = {"memory.full_context_prefill_s": last.full_s, "memory.store_prefill_s": last.store_s - last.search_s,
               "memory.store_query_s": last.store_s, "memory.full_context_energy_j": last.full_j,
               "memory.store_energy_j": last.store_j,
               "memory.tokens_per_query": last.store_tokens, "memory.history_tokens": last.history_tokens}
        if output.crossover_latency is not None:
            out["memory.crossover_turns_latency"] = output.crossover_latency
        if output.crossover_energy is not None:
            out["memory.crossover_turns_energy"] = output.crossover_energy
        return out

    def wrong_answers(self, output: CrossoverAnswer) -> list[CrossoverAnswer]:
        first = output.points[0]
        return [replace(output, crossover_latency=(output.crossover_latency or 10.0) * 2 + 1),
                replace(output, points=(replace(first, full_s=first.full_s * 1.01), *output.points[1:])),
                replace(output, points=(replace(first, store_tokens=first.store_tokens + 50), *output.points[1:]))]

    def input_bytes(self, inputs: History) -> int:
        return 0

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        return tokenizer_missing(params["tokenizer"]) or threads_missing(params["threads"]) or store_unavailable(impl)


def crossover_answer(store: str, history: History, params: dict) -> CrossoverAnswer:
    measured = measure_ladder(store, params, history.built["seed"], history)
    points = model_points(measured, params["config"], params["device"])
    return CrossoverAnswer(store, params["device"], params["config"], points,
                           crossing(points, "full_s", "store_s"), crossing(points, "full_j", "store_j"))


def _register(store: str) -> None:
    def run(inputs: History, params: dict) -> CrossoverAnswer:
        return crossover_answer(store, inputs, params)

    run.__doc__ = f"full context vs the {store} memory store under the hardware model"
    implementation("memory_crossover", store, devices=("cpu",), baseline=store == "full_context")(run)


for _store in store_names():
    _register(_store)
