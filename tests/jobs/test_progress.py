import pytest

from myspinbot.jobs.progress import PlanError, Step, StepPlan


def plan() -> StepPlan:
    return StepPlan(
        [
            Step("script", 5),
            Step("speech", 10, after=("script",)),
            Step("stage", 25, after=("script",)),
            Step("animate", 50, after=("speech", "stage")),
            Step("finish", 10, after=("animate",)),
        ]
    )


def test_weighted_progress_follows_the_steps() -> None:
    p = plan()
    assert p.update("script", 1.0) == pytest.approx(5)
    assert p.update("speech", 0.5) == pytest.approx(10)
    # Reaching `animate` means everything before it is done.
    assert p.update("animate", 0.5) == pytest.approx(5 + 10 + 25 + 25)
    assert p.complete() == pytest.approx(100)


def test_progress_never_goes_backwards() -> None:
    p = plan()
    p.update("animate", 0.8)
    assert p.update("speech", 0.1) == pytest.approx(80)
    assert p.update("animate", 0.2) == pytest.approx(80)


def test_steps_are_ordered_topologically() -> None:
    p = StepPlan([Step("b", after=("a",)), Step("a")])
    assert p.names() == ["a", "b"]


@pytest.mark.parametrize(
    "steps, message",
    [
        ([Step("a", after=("b",)), Step("b", after=("a",))], "cycle"),
        ([Step("a", after=("zzz",))], "unknown step"),
        ([Step("a"), Step("a")], "unique"),
    ],
)
def test_bad_plans_are_refused(steps: list[Step], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        StepPlan(steps)


def test_unknown_step_report_names_the_plan() -> None:
    with pytest.raises(PlanError, match="the plan has"):
        plan().update("nope", 0.5)


def test_eta_is_linear_in_pace() -> None:
    p = StepPlan([Step("a")], started=100.0)
    assert p.eta_seconds(now=101.0) is None  # no pace yet
    p.update("a", 0.25)
    assert p.eta_seconds(now=110.0) == pytest.approx(30.0)
