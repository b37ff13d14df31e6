"""Progress over a small DAG of weighted steps.

A job declares its steps up front (`Step("train", weight=80, after=("prepare",))`);
the handler reports a fraction done within the current step, and the plan turns
that into an overall 0-100 figure and an ETA. Progress never goes backwards: a
step reported out of order or a smaller fraction leaves the figure where it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    name: str
    weight: float = 1.0
    after: tuple[str, ...] = ()
    title: str | None = None  # what a person reads ("Rendering frames")


class PlanError(ValueError):
    pass


def _topological(steps: Sequence[Step]) -> list[Step]:
    by_name = {s.name: s for s in steps}
    if len(by_name) != len(steps):
        raise PlanError("step names must be unique")
    for s in steps:
        if s.weight < 0:
            raise PlanError(f"step {s.name!r} has a negative weight")
        for dep in s.after:
            if dep not in by_name:
                raise PlanError(f"step {s.name!r} depends on unknown step {dep!r}")
    ordered: list[Step] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(s: Step) -> None:
        mark = state.get(s.name)
        if mark == 2:
            return
        if mark == 1:
            raise PlanError(f"steps form a cycle through {s.name!r}")
        state[s.name] = 1
        for dep in s.after:
            visit(by_name[dep])
        state[s.name] = 2
        ordered.append(s)

    for s in steps:
        visit(s)
    return ordered


@dataclass
class StepPlan:
    steps: Sequence[Step]
    started: float = field(default_factory=time.monotonic)
    _done: dict[str, float] = field(default_factory=dict)  # step -> fraction done (0..1)
    _high: float = 0.0

    def __post_init__(self) -> None:
        self.steps = _topological(self.steps)
        self._total = sum(s.weight for s in self.steps) or 1.0
        self._weights = {s.name: s.weight for s in self.steps}

    @classmethod
    def single(cls, name: str = "run") -> StepPlan:
        return cls([Step(name)])

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def title(self, name: str) -> str:
        for s in self.steps:
            if s.name == name:
                return s.title or name
        raise PlanError(f"unknown step {name!r}")

    def update(self, step: str, fraction: float) -> float:
        """Record progress within `step` and return the overall percentage."""
        if step not in self._weights:
            raise PlanError(f"unknown step {step!r}; the plan has {self.names()}")
        fraction = min(max(fraction, 0.0), 1.0)
        # Reaching a step means every step it depends on is finished.
        for dep in self._ancestors(step):
            self._done[dep] = 1.0
        self._done[step] = max(self._done.get(step, 0.0), fraction)
        return self.percent

    def complete(self, steps: Iterable[str] | None = None) -> float:
        for name in steps if steps is not None else self._weights:
            self._done[name] = 1.0
        return self.percent

    @property
    def percent(self) -> float:
        raw = sum(self._weights[n] * f for n, f in self._done.items()) / self._total * 100
        self._high = max(self._high, min(raw, 100.0))
        return self._high

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Linear estimate from the pace so far; None until there is a pace to go by."""
        pct = self.percent
        elapsed = (now if now is not None else time.monotonic()) - self.started
        if pct <= 0.5 or elapsed <= 0:
            return None
        return max(elapsed * (100.0 - pct) / pct, 0.0)

    def _ancestors(self, step: str) -> set[str]:
        by_name = {s.name: s for s in self.steps}
        seen: set[str] = set()
        stack = list(by_name[step].after)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(by_name[name].after)
        return seen
