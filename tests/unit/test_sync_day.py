"""Release periods, the noise rule and the per-device budget at scale, through `bench sync --day`'s simulation: the real
coordinator on SQLite with each device's real secure-aggregation work, on a simulated clock.

The layout is small (424 shared numbers), so that at noise multiplier 1 an average needs about 106 updates
before its noise is smaller than any signal it could carry, while cohorts hold 10."""

from __future__ import annotations

import pytest

from agent.federation.accounting import privacy_spent
from agent.federation.layout import SharedLayout
from agent.lab.bench.sync_day import day_markdown, simulate_day
from agent.server.release import smallest_releasable_cohort
from agent.server.settings import CoordinatorSettings

LAYOUT = SharedLayout.create(16, 4, [f"test:{i}" for i in range(40)], residual_rank=8)


def day(devices: int = 1500, hours: float = 3.0, **changes):
    settings = CoordinatorSettings(**{"min_cohort": 10, "max_cohort": 10, "checkin_window": 60.0,
                                      "stage_timeout": 60.0, **changes})
    return settings, simulate_day(settings, devices=devices, hours=hours, layout=LAYOUT, log=lambda line: None,
                                  changed=changes)


def test_a_federation_too_small_to_ever_carry_its_noise_uploads_nothing():
    settings, run = day(devices=80)
    assert smallest_releasable_cohort(settings, LAYOUT.size) > 80
    assert run["releases"] == [] and run["device_rounds_released"] == 0
    assert run["cohorts"].get("withheld", 0) >= 2 and set(run["cohorts"]) == {"withheld"}
    assert run["device_seconds"] == 0 and "masked" not in run["requests"]  # no device sent an update
    assert run["epsilon_most_spent"] == 0
    reason = next(iter(run["withheld_reasons"]))
    assert reason.startswith("even if all N registered devices took part in this release, its noise")


def test_without_a_period_cohorts_run_side_by_side_until_together_they_can_be_released():
    settings, run = day()
    needed = smallest_releasable_cohort(settings, LAYOUT.size)
    assert needed > 10 * 10  # no cohort of 10 could be released alone
    assert len(run["releases"]) >= 3
    for release in run["releases"]:
        # as soon as they can: at least what a releasable average needs, and at most the cohorts still
        # running then more (4 at once, of 10)
        assert needed <= release["summands"] < needed + 4 * 10 + 10 and release["cohorts"] >= 10
    assert "withheld" not in run["cohorts"]


def test_a_period_gathers_cohorts_until_their_combined_average_can_be_released():
    settings, run = day(release_period=1800.0)
    needed = smallest_releasable_cohort(settings, LAYOUT.size)
    assert len(run["releases"]) >= 2
    # Each release combined several cohorts of 10, at least as many updates as a releasable average needs,
    # and no cohort was withheld: the period waited for more instead.
    for release in run["releases"]:
        assert release["cohorts"] >= 5 and release["summands"] >= needed
    assert "withheld" not in run["cohorts"]
    assert run["devices_contributed"] >= needed
    # ...and no sooner than the period: one release per 30 minutes at most.
    times = [release["at"] for release in run["releases"]]
    assert all(later - earlier >= 1800.0 for earlier, later in zip(times, times[1:]))
    # No device was in two cohorts of one period: the most any device spent is one step per period at most.
    periods = len(run["releases"]) + 1  # the last period may be summed but not yet released
    assert run["epsilon_most_spent"] <= privacy_spent([1.0] * periods, settings.target_delta).epsilon + 1e-9
    text = day_markdown([run])
    assert f"| **releases** (first, last) | **{len(run['releases'])}** (" in text


def test_the_budget_is_per_device_and_the_federation_goes_on_without_those_at_it():
    # At z = 1 one step costs 4.38 and two 6.57: a budget of 7 lets each device into two periods.
    settings, run = day(hours=6.0, release_period=900.0, epsilon_budget=7.0)
    assert run["refusals"].get("budget_exhausted", 0) > 0 and run["devices_at_budget"] > 0
    first = run["first_at_budget"]
    assert first is not None
    assert any(release["at"] > first for release in run["releases"])  # releases go on after it
    assert run["epsilon_most_spent"] == pytest.approx(privacy_spent([1.0, 1.0], settings.target_delta).epsilon,
                                                      abs=1e-6)


def test_bench_sync_day_writes_its_section_and_names_a_bad_setting(tmp_path):
    from click.testing import CliRunner

    from agent.cli import cli

    report = tmp_path / "BENCHMARKS.md"
    result = CliRunner().invoke(cli, ["bench", "sync", "--day", "--devices", "300", "--hours", "0.5", "--setting",
                                      "release-period=600", "--output", str(report)])
    assert result.exit_code == 0, result.output
    text = report.read_text()
    assert "## Federated sync: a simulated day" in text and "| | defaults but release-period=600.0 |" in text
    # 300 registered devices cannot carry the default layout's noise: nothing uploaded, and the table says why.
    assert "| **releases** (first, last) | **0** |" in text and "even if all N registered devices" in text
    assert "| devices; hours simulated; dropout | 300; 00:00-00:30; 0.2 |" in text
    for bad, said in (("release_period", "expected NAME=VALUE"), ("no-such=1", "expected NAME=VALUE"),
                      ("release-period=soon", "'release-period=soon': 'soon' is not a valid float"),
                      ("min-cohort=2", "2 is not in the range x>=3"), ("min-cohort=200", "min_cohort (200) <= max_cohort (100)")):
        refused = CliRunner().invoke(cli, ["bench", "sync", "--day", "--setting", bad, "--output", str(report)])
        assert refused.exit_code == 2 and said in refused.output and "Traceback" not in refused.output, refused.output


def test_part_of_the_day_starts_the_coordinator_at_its_hour():
    settings = CoordinatorSettings(min_cohort=10, max_cohort=10, checkin_window=60.0, stage_timeout=60.0)
    run = simulate_day(settings, devices=1500, hours=2.0, layout=LAYOUT, log=lambda line: None, from_hour=19.0)
    assert run["from_hour"] == 19.0 and run["sim_seconds"] == 2 * 3600.0
    assert run["releases"] and all(19 * 3600.0 <= release["at"] < 21 * 3600.0 for release in run["releases"])
    assert "| devices; hours simulated; dropout | 1,500; 19:00-21:00; 0.2 |" in day_markdown([run])
    with pytest.raises(ValueError, match="not within one day"):
        simulate_day(settings, devices=10, hours=6.0, layout=LAYOUT, from_hour=20.0)


def test_ctrl_c_stops_the_day_and_reports_the_hours_simulated(monkeypatch):
    from agent.lab.bench import sync_day

    hour = sync_day.DaySimulation.hour

    def interrupted(self, number):
        hour(self, number)
        if number == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(sync_day.DaySimulation, "hour", interrupted)
    _, run = day(hours=3.0)
    assert run["stopped_early_at"] == pytest.approx(3600.0, abs=1.0) and run["requests"]["checkin"] > 0
    assert "| 1,500; 00:00-01:00 (stopped; asked for 00:00-03:00); 0.2 |" in day_markdown([run])
