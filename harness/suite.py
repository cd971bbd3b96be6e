"""Suite YAML -> validated Settings and Cases; every error names the file, the entry and the field."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness.case import Case
from harness.errors import SuiteError, UserError
from harness.registry import Registry

DEVICES = ("cpu", "cuda")
ISOLATIONS = ("process", "inline")
SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"


@dataclass(frozen=True)
class Settings:
    """How every case of a suite is measured (DESIGN: measurement rules)."""

    warmup_s: float = 0.05
    min_repeats: int = 5
    min_time_s: float = 0.2
    max_repeats: int = 10_000
    timeout_s: float = 60.0
    isolation: str = "process"
    seed: int = 0
    energy_window_s: float = 1.0
    threads: int = 0  # CPU threads per case (torch, BLAS, OpenMP); 0 = each library's default

    def validate(self) -> str | None:
        if self.isolation not in ISOLATIONS:
            return f"isolation: {self.isolation!r} is not allowed; allowed: {', '.join(ISOLATIONS)}"
        for name in ("warmup_s", "min_time_s", "energy_window_s"):
            if getattr(self, name) < 0:
                return f"{name}: must be >= 0, got {getattr(self, name)}"
        if self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            return "min_repeats must be >= 1 and max_repeats >= min_repeats"
        if self.threads < 0:
            return f"threads: must be >= 0 (0 = library defaults), got {self.threads}"
        if self.timeout_s <= 0:
            return f"timeout_s: must be > 0, got {self.timeout_s}"
        return None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    sha256: str
    settings: Settings
    cases: tuple[Case, ...]
    plugins: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "path": self.path, "sha256": self.sha256,
                "settings": {f.name: getattr(self.settings, f.name) for f in fields(Settings)},
                "plugins": list(self.plugins), "cases": len(self.cases)}


def resolve_suite_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a suite in ./suites or membench's own suites/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # a folder named like a suite (ci/) is not one
        if not path.is_file():
            raise SuiteError(f"suite file {path} does not exist")
        return path
    for folder in (Path.cwd() / "suites", SUITES_DIR):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise SuiteError(f"unknown suite {name_or_path!r}; known suites: {', '.join(list_suites()) or 'none'}")


def list_suites() -> list[str]:
    names = {p.stem for folder in (Path.cwd() / "suites", SUITES_DIR) if folder.is_dir()
             for p in folder.glob("*.yaml")}
    return sorted(names)


def load_suite(name_or_path: str, registry: Registry, device: str | None = None) -> Suite:
    """Read, validate and expand a suite. `device` replaces every entry's devices (the CLI's --device)."""
    path = resolve_suite_path(name_or_path)
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{path}: YAML syntax error{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a mapping with keys name, description, settings, cases")
    _check_keys(path, "top level", data, {"name", "description", "settings", "cases", "plugins"})
    plugins = tuple(_list_of_str(f"{path}: plugins", data.get("plugins", [])))
    registry.load(plugins)
    settings = _settings(path, data.get("settings") or {})
    if device is not None and device not in DEVICES:
        raise SuiteError(f"--device {device!r} is not allowed; allowed: {', '.join(DEVICES)}")
    entries = data.get("cases")
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{path}: 'cases' must be a non-empty list of case entries")
    cases: list[Case] = []
    for index, entry in enumerate(entries):
        cases.extend(_expand(path, index, entry, registry, settings.seed, device))
    unique = list(dict.fromkeys(cases))
    return Suite(str(data.get("name", path.stem)), str(data.get("description", "")), _display_path(path),
                 hashlib.sha256(text.encode()).hexdigest()[:12], settings, tuple(unique), plugins)


def _display_path(path: Path) -> str:
    """Relative to membench's folder or the working directory when inside them: manifests travel between machines."""
    for root in (SUITES_DIR.parent, Path.cwd()):
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return str(path)


def _settings(path: Path, raw: Any) -> Settings:
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: settings must be a mapping")
    allowed = {f.name: f for f in fields(Settings)}
    _check_keys(path, "settings", raw, set(allowed))
    values = {}
    for key, value in raw.items():
        kind = type(getattr(Settings(), key))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise SuiteError(f"{path}: settings.{key}: expected {kind.__name__}, got {value!r}")
        values[key] = value
    settings = Settings(**values)
    problem = settings.validate()
    if problem:
        raise SuiteError(f"{path}: settings.{problem}")
    return settings


def _expand(path: Path, index: int, entry: Any, registry: Registry, seed: int, device: str | None) -> list[Case]:
    where = f"{path}: cases[{index}]"
    if not isinstance(entry, dict) or "workload" not in entry:
        raise SuiteError(f"{where}: each case entry is a mapping with a 'workload' field")
    _check_keys(path, f"cases[{index}]", entry, {"workload", "impls", "grid", "devices"})
    try:
        workload = registry.workload(str(entry["workload"]))
    except UserError as exc:  # the registry's message carries the "did you mean"
        raise SuiteError(f"{where}: workload: {exc}") from None
    where = f"{where} ({workload.name})"
    known_impls = registry.impls_of(workload.name)
    impl_names = entry.get("impls", "all")
    impl_names = sorted(known_impls) if impl_names == "all" else _list_of_str(f"{where}: impls", impl_names)
    for name in impl_names:
        if name not in known_impls:
            raise SuiteError(f"{where}: impls: unknown implementation {name!r}; "
                             f"allowed: {', '.join(sorted(known_impls))}")
    devices = [device] if device else _list_of_str(f"{where}: devices", entry.get("devices", ["cpu"]))
    for dev in devices:
        if dev not in DEVICES:
            raise SuiteError(f"{where}: devices: {dev!r} is not allowed; allowed: {', '.join(DEVICES)}")
    axes = _grid(where, workload, entry.get("grid") or {})
    cases = []
    for dev, impl_name in itertools.product(devices, impl_names):
        if dev not in known_impls[impl_name].devices:
            continue
        for combo in itertools.product(*[values for _, values in axes]):
            params = tuple(zip([name for name, _ in axes], combo, strict=True))
            cases.append(Case(workload.family, workload.name, impl_name, params, dev, seed))
    if not cases:
        raise SuiteError(f"{where}: none of the implementations {impl_names} runs on devices {devices}")
    return cases


def _grid(where: str, workload: Any, grid: Any) -> list[tuple[str, list]]:
    """Every declared param in declared order: grid values validated, defaults for the rest."""
    if not isinstance(grid, dict):
        raise SuiteError(f"{where}: grid must be a mapping of param name to a list of values")
    declared = {p.name for p in workload.params}
    for key in grid:
        if key not in declared:
            raise SuiteError(f"{where}: grid.{key}: unknown param; allowed: {', '.join(sorted(declared))}")
    axes = []
    for param in workload.params:
        raw = grid.get(param.name, [param.default])
        values = raw if isinstance(raw, list) else [raw]
        checked = []
        for value in values:
            try:
                checked.append(param.validate(value))
            except ValueError as exc:
                raise SuiteError(f"{where}: grid.{param.name}: {exc}; allowed: {param.allowed()}") from None
        axes.append((param.name, list(dict.fromkeys(checked))))
    return axes


def _check_keys(path: Path, where: str, mapping: dict, allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise SuiteError(f"{path}: {where}: unknown field {key!r}; allowed: {', '.join(sorted(allowed))}")


def _list_of_str(where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteError(f"{where}: expected a list of names, got {value!r}")
    return value
