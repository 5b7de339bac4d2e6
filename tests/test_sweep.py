"""`--scenario sweep` (comparison/scenarios/sweep.py) and its judging (comparison/pareto.py): the front,
the knee rule, the recommendation sentence, --sweep's checks against the plugin's table, and one short
real sweep of two values."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from comparison import pareto
from comparison.__main__ import parse_config
from comparison.errors import ConfigError
from comparison.pareto import Point
from comparison.scenarios.sweep import SweepOptions, check_value, numeric_options

ROOT = Path(__file__).resolve().parent.parent


def cap(value: float, goodput: float, p99: float | None) -> Point:
    return Point(f"max-concurrent={value:g}", value, goodput, None if p99 is None else p99 / 2, p99, 10.0)


# -- the front ---------------------------------------------------------------------------------------------


def test_the_front_keeps_only_the_points_no_other_beats_on_both():
    points = [cap(8, 60, 100), cap(16, 80, 200), cap(32, 79, 400), cap(64, 80, 600), cap(4, 40, 100)]
    # 32 is beaten by 16 (more goodput, lower p99); 64 ties 16's goodput at a higher p99; 4 ties 8's p99
    assert pareto.front(points) == [True, True, False, False, False]


def test_a_point_that_answered_nothing_is_on_the_front_only_if_it_has_the_most_goodput():
    assert pareto.front([cap(8, 60, 100), cap(16, 0, None)]) == [True, False]


def test_an_adaptive_point_can_beat_the_caps():
    mode = Point("AdaptiveClient knee", None, 85, 90, 180, 40)
    points = [cap(16, 80, 200), cap(48, 84, 500), mode]
    assert pareto.front(points) == [False, False, True]


# -- the knee and the recommendation ------------------------------------------------------------------------


def test_the_knee_is_within_five_percent_of_the_best():
    points = [cap(64, 86, 600), cap(8, 60, 100), cap(16, 82, 190), cap(24, 81.6, 250), cap(48, 85, 500)]
    assert pareto.knee(points).value == 16  # 82 >= 0.95 x 86 = 81.7; 8's 60 is not
    assert pareto.knee([cap(8, 0, None)]) is None


def test_the_recommendation_is_the_knee_and_says_why():
    points = [cap(8, 60, 100), cap(16, 82, 190), cap(48, 86, 500)]
    pick, sentence = pareto.recommend(points, "--max-concurrent")
    assert pick.value == 16
    assert sentence.startswith("Use --max-concurrent 16: it is the knee")
    assert "within 5 % of the best" in sentence and "p99 190 ms" in sentence and "the best, 48" in sentence


def test_the_knee_is_the_near_best_value_with_the_lowest_p99_whichever_way_the_option_points():
    """A smaller cap with a longer queue than a larger one (a noisy run) is not the knee; and for
    --adaptive-elasticity a larger value settles lower. The quiet machine's elasticity sweep: the old rule
    (the smallest near-best value) recommended 5, the highest p99 of all; 10 is the knee."""
    points = [cap(8, 60, 100), cap(16, 82, 400), cap(24, 83, 300), cap(48, 86, 500)]
    pick, sentence = pareto.recommend(points, "--max-concurrent")
    assert pareto.knee(points).value == pick.value == 24 and "it is the knee" in sentence
    sweep = [cap(5, 86.2, 491), cap(6, 84.0, 412), cap(7, 83.8, 424), cap(8, 84.4, 352), cap(10, 82.6, 292)]
    pick, sentence = pareto.recommend(sweep, "--adaptive-elasticity")
    assert pareto.knee(sweep).value == pick.value == 10
    assert sentence.startswith("Use --adaptive-elasticity 10: it is the knee, the lowest p99 of the values")


def test_a_knee_off_the_front_gives_way_to_the_front_value_with_the_lowest_p99():
    points = [cap(8, 60, 100), cap(16, 82, 300), cap(24, 84, 300), cap(48, 86, 500)]  # 24 beats 16
    pick, sentence = pareto.recommend(points, "--max-concurrent")
    assert pareto.knee(points).value == 16 and pick.value == 24
    assert "lowest p99 on the Pareto front" in sentence and "the knee, 16, has as low a p99" in sentence


def test_an_adaptive_point_beating_every_near_value_leaves_the_choice_among_the_values():
    """A full benchmarks/pareto.py run crashed here: the SLO-target gradient beat caps 48 and 64 on both
    axes, the only caps within 5 % of the best, so no value near the best was on the front."""
    mode = Point("AdaptiveClient gradient", None, 77.7, 481, 547, 266)
    points = [cap(16, 66.9, 316), cap(32, 66.9, 567), cap(48, 73.8, 734), cap(64, 73.8, 1170), mode]
    pick, sentence = pareto.recommend(points, "--max-concurrent")
    assert pick.value == 48 and sentence.startswith("Use --max-concurrent 48")


def test_the_best_is_recommended_when_nothing_smaller_comes_close():
    pick, sentence = pareto.recommend([cap(8, 40, 100), cap(16, 80, 200)], "--max-concurrent")
    assert pick.value == 16 and "it gives the most SLO goodput" in sentence


def test_no_recommendation_when_no_value_kept_a_call_within_the_slo():
    pick, sentence = pareto.recommend([cap(8, 0, None), cap(16, 0, 2000)], "--open-ms")
    assert pick is None and sentence.startswith("No value of --open-ms kept any call within the SLO")


def test_the_table_marks_the_front_and_the_knee():
    table = pareto.markdown_table([cap(8, 60, 100), cap(16, 82, 190), cap(32, 80, 400)])
    assert "| max-concurrent=16 | 82.0 | 95 ms | 190 ms | 10 ms | yes | yes |" in table
    assert "| max-concurrent=32 | 80.0 | 200 ms | 400 ms | 10 ms |  |  |" in table


# -- --sweep's checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("max-concurent=8", "'max-concurent' is not a client option; numeric ones: max-concurrent"),
        ("throttle-mode=1,2", "'throttle-mode' does not take a number"),
        ("slo-ms=100,200", "'slo-ms' is set by the runner"),
        ("max-concurrent=0,8", "max-concurrent: '0' must be from 1 to 10,000"),
        ("max-concurrent=8,1.5", "max-concurrent: '1.5' is not a whole number"),
        ("max-concurrent=8,08", "each value once"),
        ("open-ms", "is not OPTION=V1,V2"),
        ("open-ms=", "give its values after ="),
        ("adaptive-tolerance=nan", "'nan' is not a number"),
    ],
)
def test_a_bad_sweep_is_one_line_naming_it(text: str, words: str):
    with pytest.raises(ConfigError) as caught:
        SweepOptions.parse(text)
    line = str(caught.value)
    assert line.startswith("--sweep: ") and words in line and "\n" not in line


def test_a_good_sweep_is_sorted_and_kept_as_typed():
    assert SweepOptions.parse("--max-concurrent=64,8,16").values == ("8", "16", "64")
    assert SweepOptions.parse("slow-call-ms=0,250").values == ("0", "250")  # 0 means off there
    assert SweepOptions.parse("adaptive-tolerance=12.5,5").values == ("5", "12.5")


def test_the_value_check_agrees_with_the_plugins_own_parser():
    from locust_plugin.options import OPTIONS

    samples = ("0", "1", "8", "1.5", "100", "1e3", "-1", "600000", "600001", "10000", "10001", "0.01", "99.9")
    for option in (o for o in OPTIONS if o.flag[2:] in numeric_options()):
        for text in samples:
            try:
                option.parse(text)
                plugin = True
            except ValueError:
                plugin = False
            try:
                check_value(option.flag[2:], numeric_options()[option.flag[2:]], text)
                ours = True
            except ConfigError:
                ours = False
            assert ours == plugin, (option.flag, text)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "--sweep: name the option to vary"),
        (
            ["--sweep", "max-concurrent=8,16", "--clients", "ThrottledClient,AdaptiveClient"],
            "exactly one class",
        ),
        (["--sweep", "max-concurrent=8,16", "--period-s", "5"], "--period-s: only for --scenario wave"),
    ],
)
def test_the_runner_refuses_a_sweep_it_cannot_run(argv: list[str], words: str):
    with pytest.raises(ConfigError, match=words):
        parse_config(["--scenario", "sweep", *argv])


def test_the_default_class_is_throttled_client_at_two_c():
    config = parse_config(["--scenario", "sweep", "--sweep", "max-concurrent=8,16"])
    assert config.clients == ("ThrottledClient",) and config.duration_s == 20


# -- one real sweep -----------------------------------------------------------------------------------------


def comparison(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparison", "--scenario", "sweep", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_swept_option_after_the_double_dash_is_refused(tmp_path: Path):
    done = comparison(
        "--sweep", "max-concurrent=8,16", "--results-dir", str(tmp_path), "--", "--max-concurrent", "4"
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m comparison: error: after --: --max-concurrent is what --sweep varies; leave it out"
    ]


@pytest.mark.slow
def test_a_real_sweep_of_two_values(tmp_path: Path):
    done = comparison(
        "--sweep", "max-concurrent=2,16", "--capacity", "60", "--duration", "5", "--drain-s", "0.5",
        "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = next(tmp_path.glob("sweep-*"))
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert [row["sweep_value"] for row in rows] == ["2", "16"]
    assert [row["sweep_point"] for row in rows] == ["max-concurrent=2", "max-concurrent=16"]
    assert all(row["client"] == "ThrottledClient" and row["scenario"] == "sweep" for row in rows)
    assert all(row["on_front"] in ("yes", "no") for row in rows) and any(r["on_front"] == "yes" for r in rows)
    assert sum(row["knee"] == "yes" for row in rows) == 1
    # each value reached Locust: about 2 calls in flight at most (the sampler's count runs one over the
    # cap), far more with 16, and more SLO goodput with 16 at 2 x C
    assert int(rows[0]["max_client_concurrent"]) <= 3 < 8 <= int(rows[1]["max_client_concurrent"])
    assert float(rows[1]["slo_goodput_rps"]) > float(rows[0]["slo_goodput_rps"])
    assert "Use --max-concurrent 16" in done.stdout
    report = (run / "report.html").read_text()
    assert 'id="pareto-front"' in report and "<svg" in report and "max-concurrent=16" in report
    assert "| max-concurrent=16 |" in (run / "summary.md").read_text()
    assert list((run / "points" / "max-concurrent-16").glob("ThrottledClient*.csv"))
