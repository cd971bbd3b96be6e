"""memory_crossover: at what history length does answering from the whole history stop paying?

For a ladder of history lengths (10 turns up to `turns`), each store is built from a seeded history and
searched with the questions: the mean tokens it injects per query, its measured search p50 and write p50. The
hardware model then gives the modeled latency and energy per query on `device` for `config` of answering from
the whole history and from the store's hits (crossover_model.py has the formulas and why a prefix cache is the
default). The crossover is the history length (turns) above which full context is the slower (or costlier)
choice, interpolated linearly between the two ladder points around the sign change, and capped by the length
at which the whole history's KV stops fitting beside the weights. It is absent, not zero, when full context
stays cheaper and fits over the whole ladder (the full_context store itself). Nothing on the accelerator is
measured; the store's search and write times are measured on this machine's CPU (the host that holds the memory).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.agents.store import store_names
from reference_impls.hardware.devices import load_devices
from reference_impls.hardware.llm_estimate import PRECISIONS
from reference_impls.hardware.transformer import builtin_configs
from workloads.memory_agents import agent_metrics
from workloads.memory_agents.crossover_model import (
    FULL_CONTEXT_MODES,
    Measured,
    Serving,
    fit_limit_tokens,
    full_context_query,
    store_query,
    weights_fit,
)
from workloads.memory_agents.memory_retrieval import store_unavailable
from workloads.memory_agents.memory_runs import (
    HISTORY_PARAMS,
    History,
    embedder_missing,
    history_tokens,
    load_history,
    prepared,
    store_options,
)
from workloads.memory_agents.synthetic_history import generate
from workloads.memory_agents.tokens import MemoCounter, tokenizer_missing

assert agent_metrics
LADDER = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)


def ladder(turns: int) -> tuple[int, ...]:
    return tuple(sorted({n for n in LADDER if n < turns} | {turns}))


@dataclass(frozen=True)
class LadderPoint:
    measured: Measured
    full_s: float  # modeled (full context needs no host work)
    store_s: float  # modeled prefill + decode, plus measured search and writes
    full_j: float
    store_j: float
    full_fits: bool  # the whole history's KV fits beside the weights

    @property
    def turns(self) -> int:
        return self.measured.turns


@dataclass(frozen=True)
class CrossoverAnswer:
    store: str
    serving: Serving
    points: tuple[LadderPoint, ...]
    fit_limit_turns: float  # history length whose KV just fits (tokens per turn as measured at the longest history)
    crossover_latency: float | None
    crossover_energy: float | None


def crossing(points: tuple[LadderPoint, ...], full: str, store: str, fit_limit_turns: float) -> float | None:
    """Turns where full - store turns positive (linear between ladder points), capped at the fit limit; None when
    full context stays cheaper and fits over the whole ladder."""
    previous, found = None, None
    for p in points:
        gap = getattr(p, full) - getattr(p, store)
        if gap > 0:
            if previous is None:
                found = float(p.turns)
            else:
                q, q_gap = previous
                found = q.turns + (p.turns - q.turns) * (-q_gap) / (gap - q_gap)
            break
        previous = (p, gap)
    if fit_limit_turns <= points[-1].turns:
        return min(found, fit_limit_turns) if found is not None else fit_limit_turns
    return found


def model_points(measured: list[Measured], serving: Serving) -> tuple[LadderPoint, ...]:
    limit = fit_limit_tokens(serving)
    out = []
    for m in measured:
        full_s, full_j = full_context_query(serving, m)
        store_s, store_j = store_query(serving, m)
        fits = m.history_tokens + m.question_tokens + serving.answer_tokens <= limit
        out.append(LadderPoint(m, full_s, store_s, full_j, store_j, fits))
    return tuple(out)


def fit_limit_turns(serving: Serving, measured: list[Measured]) -> float:
    last = measured[-1]
    return fit_limit_tokens(serving) / (last.history_tokens / last.turns)


def generate_up_to(turns: int, questions: int, seed: int):
    """A seeded history with as many of `questions` as a history this short supports (halving until it fits)."""
    while True:
        try:
            return generate(turns, questions, seed)
        except ValueError:
            if questions <= 1:
                raise
            questions //= 2


def median(values: list[int]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] / 1e9


def measure_ladder(store: str, params: dict, seed: int, history: History) -> list[Measured]:
    """One retrieval pass per ladder length (cached on the inputs: the first call does it)."""
    key = ("ladder", store)
    if key not in history.built:
        rows, count = [], MemoCounter(params["tokenizer"])
        for n in ladder(params["turns"]):
            sub = History((generate_up_to(n, params["questions"], seed),))
            built = prepared(sub, store, params["k"], params["tokenizer"], store_options(store, params))
            qa = sub.conversations[0].qa
            question_tokens = sum(count(qa[o.question].question) for o in built.outcomes) / len(built.outcomes)
            rows.append(Measured(n, float(history_tokens(sub.conversations[0], params["tokenizer"])),
                                 question_tokens, sum(o.tokens for o in built.outcomes) / len(built.outcomes),
                                 median([o.latency_ns for o in built.outcomes]), median(built.write_ns)))
            for s in built.stores:
                s.close()
        history.built[key] = rows
    return history.built[key]


def serving_of(params: dict) -> Serving:
    return Serving(params["config"], params["device"], params["weights"], params["full_context"],
                   params["answer_tokens"], params["turns_per_query"])


@register_workload
class MemoryCrossover(Workload):
    name = "memory_crossover"
    family = "memory_agents"
    description = ("Modeled latency and energy per query (prefill + answer decode) of answering from the whole "
                   "history vs from each memory store's hits (plus its measured search and writes) on a device "
                   "profile, as the history grows: the crossover history length in turns, capped where the "
                   "history's KV stops fitting. Hardware model only; nothing on the accelerator is measured.")
    sweep_param = "turns"
    primary_metric = "memory.crossover_turns_latency"
    params = (*(replace(p, default=100) if p.name == "questions" else p for p in HISTORY_PARAMS
                if p.name != "data"),
              Param("device", str, "h100-sxm-80gb", choices=tuple(load_devices()), doc="device profile (devices.yaml)"),
              Param("config", str, "llama-3.1-8b", choices=builtin_configs(), doc="model config (hardware/configs)"),
              Param("weights", str, "bf16", choices=tuple(PRECISIONS), doc="weight format of the served model"),
              Param("full_context", str, "prefix_cache", choices=FULL_CONTEXT_MODES,
                    doc="prefix_cache: the chat's KV cache is kept between queries; reprefill: the history is "
                        "prefilled again for every query"),
              Param("answer_tokens", int, 32, minimum=0, doc="tokens generated per answer"),
              Param("turns_per_query", float, 2.0, minimum=0.0,
                    doc="history turns written between two queries (a user turn and a reply: 2)"))
    contract_params = {"turns": 200, "questions": 30}

    def inputs(self, params: dict, device: str, seed: int) -> History:
        history = load_history({**params, "data": "synthetic"}, seed)
        history.built["seed"] = seed
        return history

    def reference(self, inputs: History, params: dict) -> tuple[Serving, tuple[int, ...]]:
        return serving_of(params), ladder(params["turns"])

    def cost(self, params: dict, impl: str) -> Cost:
        """The timed call evaluates the cost model at every ladder point: a few hundred float operations each."""
        points = len(ladder(params["turns"]))
        return Cost(flops=400.0 * points, bytes={"dram": 64.0 * points}, dtype="float64", hardware_bound=False)

    def check(self, output: CrossoverAnswer, reference: tuple, baseline_error: float | None) -> Check:
        serving, turns = reference
        wrong = []
        if tuple(p.turns for p in output.points) != turns:
            wrong.append("ladder differs from the requested history lengths")
        if output.serving != serving:
            wrong.append("answer modeled for other serving settings than the case's")
        expected = model_points([p.measured for p in output.points], serving)
        if expected != output.points:
            wrong.append("modeled figures disagree with the hardware model")
        if any(b.full_s <= a.full_s for a, b in zip(output.points, output.points[1:], strict=False)):
            wrong.append("full-context cost does not grow with the history")
        limit = fit_limit_turns(serving, [p.measured for p in output.points])
        if output.fit_limit_turns != limit:
            wrong.append("fit limit disagrees with the device's memory")
        for got, full, store in ((output.crossover_latency, "full_s", "store_s"),
                                 (output.crossover_energy, "full_j", "store_j")):
            if got != crossing(output.points, full, store, limit):
                wrong.append(f"crossover {got} disagrees with the ladder")
        return Check(not wrong, float(len(wrong)), 0.0,
                     "modeled figures recompute and the crossover brackets the sign change" +
                     (f" ({wrong[0]})" if wrong else ""))

    def quality(self, output: CrossoverAnswer, reference: tuple) -> dict[str, float]:
        return {}

    def counters(self, output: CrossoverAnswer, params: dict) -> dict[str, float]:
        last = output.points[-1]
        out = {"memory.store_query_s": last.store_s, "memory.store_energy_j": last.store_j,
               "memory.tokens_per_query": last.measured.store_tokens,
               "memory.history_tokens": last.measured.history_tokens,
               "memory.full_context_fit_turns": output.fit_limit_turns}
        if last.full_fits:
            out.update({"memory.full_context_query_s": last.full_s, "memory.full_context_energy_j": last.full_j})
        if output.crossover_latency is not None:
            out["memory.crossover_turns_latency"] = output.crossover_latency
        if output.crossover_energy is not None:
            out["memory.crossover_turns_energy"] = output.crossover_energy
        return out

    def wrong_answers(self, output: CrossoverAnswer) -> list[CrossoverAnswer]:
        first = output.points[0]
        moved = replace(first.measured, store_tokens=first.measured.store_tokens + 50)
        return [replace(output, crossover_latency=(output.crossover_latency or 10.0) * 2 + 1),
                replace(output, points=(replace(first, full_s=first.full_s * 1.01), *output.points[1:])),
                replace(output, points=(replace(first, measured=moved), *output.points[1:]))]

    def input_bytes(self, inputs: History) -> int:
        return 0

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if not weights_fit(serving_of(params)):
            return (f"{params['config']} with {params['weights']} weights does not fit in {params['device']}'s "
                    "memory: choose smaller weights (e.g. int4) or a larger device")
        return tokenizer_missing(params["tokenizer"]) or store_unavailable(impl) or embedder_missing(impl, params)


def crossover_answer(store: str, history: History, params: dict) -> CrossoverAnswer:
    measured = measure_ladder(store, params, history.built["seed"], history)
    serving = serving_of(params)
    points = model_points(measured, serving)
    limit = fit_limit_turns(serving, measured)
    return CrossoverAnswer(store, serving, points, limit, crossing(points, "full_s", "store_s", limit),
                           crossing(points, "full_j", "store_j", limit))


def _register(store: str) -> None:
    def run(inputs: History, params: dict) -> CrossoverAnswer:
        return crossover_answer(store, inputs, params)

    run.__doc__ = f"full context vs the {store} memory store under the hardware model"
    implementation("memory_crossover", store, devices=("cpu",), baseline=store == "full_context")(run)


for _store in store_names():
    _register(_store)
