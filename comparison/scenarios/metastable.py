"""`metastable`: 0.9 x C, a 10 s trigger that halves capacity, 30 s after: does the client come back?

The model, its options and the verdict's maths are in comparison/metastable.py, its charts in
comparison/metastable_report.py; this room wires them in. The run length is its phases
(--pre-trigger-s + --trigger-s + --after-trigger-s), it starts its own target (whose queue and checks
are part of the model), its event is the trigger, and it fills the pre/post-trigger columns, recovered,
recovery_s, peak_share and verdict.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from comparison import metastable as model
from comparison.errors import ConfigError
from comparison.plan import LoadPlan
from comparison.scenarios.base import Number, Prepared, RunSettings, Scenario, Window
from comparison.scenarios.capacity import phase_story, with_phase_goodput
from comparison.summary import ClassResult, Summary

CLIENTS = ("NaiveRetryClient", "RetryClient", "SreThrottleClient", "AdaptiveClient")


class Metastable(Scenario):
    name = "metastable"
    order = 80
    help = "0.9 x C, a 10 s trigger that halves capacity, 30 s after: does the client come back?"
    multiplier = 0.9
    option_dests = model.OPTION_DESTS
    clients = CLIENTS
    option_defaults = model.MetastableOptions()

    def add_arguments(self, parser: argparse.ArgumentParser, number: Number) -> None:
        model.add_arguments(parser, number)

    def options(self, args: argparse.Namespace) -> model.MetastableOptions:
        try:
            return model.from_args(args, self.option_defaults)
        except model.MetastableError as error:
            raise ConfigError(error.option, str(error).split(": ", 1)[1]) from None

    def defaults(self, args: argparse.Namespace, options: Any) -> dict[str, Any]:
        if args.duration is not None:
            raise ConfigError("--duration", f"the {self.name} scenario's phases set it; use "
                              "--pre-trigger-s, --trigger-s and --after-trigger-s")  # fmt: skip
        if args.host:
            raise ConfigError("--host", f"the {self.name} scenario starts its own target (its queue and "
                              "checks are part of the model); leave --host out")  # fmt: skip
        found: dict[str, Any] = {"duration_s": options.duration_s}
        if args.clients is None and args.mix is None:
            found["clients"] = self.clients
        return found

    def prepare(self, config: RunSettings, plan: LoadPlan, capacity_rps: float) -> Prepared:
        options: model.MetastableOptions | None = config.scenario_options
        if options is None:
            return Prepared(plan)
        return Prepared(
            plan.with_trigger(options.pre_s, options.trigger_s),
            options.target_args(capacity_rps),  # the model's target: its queue sized from C
            f"Metastable phases: {options.describe()}.",
        )

    def event(
        self, url: str, plan: LoadPlan, config: RunSettings, entry: dict[str, Any]
    ) -> Callable[[], Window] | None:
        options: model.MetastableOptions | None = config.scenario_options
        if options is None or not plan.capacity_change_s:
            return None

        def trigger() -> Window:
            window = model.trigger_window(url, options, config.allow_remote)
            entry["trigger"] = {"window": list(window), "kind": options.trigger_kind}
            return window

        return trigger

    def result(self, client: str, files: Any, window: Window | None) -> ClassResult:
        return ClassResult(client, files, capacity_change=window)

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        summary = with_phase_goodput(summary, result)
        if config.scenario_options is None:
            return summary
        return model.adjust(summary, result, config.scenario_options)

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        return phase_story(summaries, plan)

    def section(
        self,
        plan: LoadPlan,
        results: Sequence[ClassResult],
        summaries: Sequence[Summary],
        config: RunSettings,
    ) -> str:
        if config.scenario_options is None:
            return ""
        from comparison.metastable_report import metastable_section  # matplotlib only when drawing

        return metastable_section(plan, results, summaries, config.scenario_options)


SCENARIO = Metastable()
