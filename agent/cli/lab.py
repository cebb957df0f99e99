"""The lab's commands: benchmarks, evaluations, the privacy audit and the traits' validation, for developers.

Each imports its part of agent.lab only when it runs, so `ownrec --help` and the person's commands never load
the lab. The root adds `traits_validate` to the person's `traits` group, under its own heading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent.cli.common import SectionedGroup, echo_err, emit_json, fail_cleanly


def _cohort_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated client counts such as 100,1000, not {value!r}") from None
    if not sizes or min(sizes) < 3:
        raise click.BadParameter("each round needs at least 3 clients")
    return sizes


@click.group(cls=SectionedGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--quick", is_flag=True, help="Fewer repetitions and one sync round of 100 (for CI); noisier figures.")
@click.option("--sync-clients", default=None, callback=lambda ctx, param, value: value and _cohort_sizes(
              ctx, param, value), help="Comma-separated cohort sizes of the sync rounds [default: 100,1000; "
              "--quick: 100].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("BENCHMARKS.md"),
              show_default=True, help="Where to write the Markdown report (the whole file is rewritten).")
@click.pass_context
@fail_cleanly
def bench(ctx: click.Context, as_json: bool, quick: bool, sync_clients: tuple[int, ...] | None, output: Path) -> None:
    """Run every benchmark in one go and rewrite BENCHMARKS.md.

    Each figure stands beside its target and the peer measured in the same run. `ownrec bench sync`
    runs federated sync alone."""
    if ctx.invoked_subcommand is not None:
        return
    from agent.lab.bench.runner import run_suite, suite_markdown, suite_results_in, write_suite_report

    earlier = suite_results_in(output)
    results = run_suite(quick=quick, log=echo_err, sync_clients=sync_clients)
    for separate in ("sync_throughput", "sync_day"):  # their own, longer runs: kept, and said to be separate
        if earlier is not None and separate in earlier:
            results[separate] = earlier[separate]
    write_suite_report(output, results)
    if as_json:
        emit_json(results)
    else:
        click.echo(suite_markdown(results))


@bench.command("sync")
@click.option("--clients", default="100,1000", show_default=True, callback=_cohort_sizes,
              help="Comma-separated cohort sizes: one round for each.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Client worker processes per round (default: one per 250 clients, at least 2).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("BENCHMARKS.md"),
              show_default=True, help="The Markdown report whose sync section is replaced (the rest is kept).")
@click.option("--throughput", type=click.FloatRange(min=10), default=None, metavar="SECONDS",
              help="Instead: device-rounds per hour for this long each, one cohort at a time (SQLite, 1 worker) "
                   "against concurrent cohorts (PostgreSQL, 3 workers); writes its section of the report.")
@click.option("--day", is_flag=True,
              help="Instead: a simulated day of many devices against the real coordinator (time scaled, in one "
                   "process; HTTP and local training left out) at `coordinator serve`'s defaults, or with --setting; "
                   "writes its section of the report. Ctrl-C stops it and reports the hours simulated so far.")
@click.option("--hours", type=click.FloatRange(min=0.1, max=24), default=24.0, show_default=True,
              help="--day: how much of the day to simulate.")
@click.option("--from-hour", type=click.FloatRange(0, 23.9), default=0.0, show_default=True,
              help="--day: the hour of the day the simulation (and the coordinator) starts at.")
@click.option("--setting", "settings", multiple=True, metavar="NAME=VALUE",
              help="--day: a coordinator setting other than serve's default, by option name (release-period=3600); "
                   "repeat for more.")
@click.option("--devices", type=click.IntRange(3), default=None,
              help="--throughput: devices [default: 120]; --day: devices [default: 100,000].")
@click.option("--cohort", type=click.IntRange(3), default=10, show_default=True, help="--throughput: cohort size.")
@click.option("--concurrent", type=click.IntRange(2), default=8, show_default=True,
              help="--throughput: the most cohorts the PostgreSQL coordinator runs at once.")
@click.option("--stage-timeout", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="--throughput: the coordinators' stage timeout (a stage with a dropout waits it out).")
@click.option("--dropout", type=click.FloatRange(0, 0.5), default=0.2, show_default=True,
              help="--throughput: the chance a device leaves a round midway.")
@click.option("--postgres-url", envvar="OWNREC_TEST_POSTGRES_URL", default=None,
              help="--throughput: a PostgreSQL server to create a throwaway database on [env OWNREC_TEST_POSTGRES_URL].")
@fail_cleanly
def bench_sync(clients: tuple[int, ...], workers: int | None, as_json: bool, output: Path, throughput: float | None,
               day: bool, hours: float, from_hour: float, settings: tuple[str, ...], devices: int | None, cohort: int, concurrent: int, stage_timeout: float, dropout: float,
               postgres_url: str | None) -> None:
    """One federated round on loopback: wall time, coordinator CPU and memory, bytes per client.

    Runs `ownrec coordinator serve` and the simulated clients (the product client, one thread and
    HTTPS connection each, spread over worker processes) on this machine, then one client's
    secure-aggregation work at cohorts of 100 to 100,000. In a report `ownrec bench` wrote, the sync
    figures are replaced and the whole report rendered again; in any other file only the section
    between the sync markers is. The 1,000-client round takes minutes on two cores.
    """
    from agent.lab.bench.coordinator import SyncBenchFailed, run_sync_bench, sync_markdown
    from agent.lab.bench.runner import write_sync_report

    if day:
        from agent.cli.coordinator import serve_default_settings
        from agent.lab.bench.runner import write_day_report
        from agent.lab.bench.sync_day import day_markdown, simulate_day
        from agent.server.settings import CoordinatorSettings

        changes = _setting_changes(settings)
        try:
            chosen = CoordinatorSettings(**serve_default_settings(**changes))
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--setting") from None
        if from_hour + hours > 24:
            raise click.BadParameter(f"--from-hour {from_hour:g} with --hours {hours:g} goes past the day's end",
                                     param_hint="--hours")
        results = simulate_day(chosen, devices=devices or 100_000, hours=hours, dropout=dropout, changed=changes,
                               log=echo_err, from_hour=from_hour)
        runs = write_day_report(output, results)
        emit_json(results) if as_json else click.echo(day_markdown(runs))
        return
    devices = devices or 120
    if throughput is not None:
        from agent.lab.bench.runner import write_throughput_report
        from agent.lab.bench.throughput import run_throughput_bench, throughput_markdown

        if not postgres_url:
            raise click.ClickException("--throughput compares against PostgreSQL with 3 workers: give --postgres-url "
                                       "(or set OWNREC_TEST_POSTGRES_URL; packaging/postgres.sh starts a server)")
        try:
            results = run_throughput_bench(postgres_url, throughput, devices, cohort, concurrent=concurrent,
                                           stage_timeout=stage_timeout, dropout=dropout, log=echo_err)
        except SyncBenchFailed as error:
            raise click.ClickException(str(error)) from None
        write_throughput_report(output, results)
        emit_json(results) if as_json else click.echo(throughput_markdown(results))
        return
    try:
        results = run_sync_bench(clients, log=echo_err, workers=workers)
    except SyncBenchFailed as error:
        raise click.ClickException(str(error)) from None
    section = sync_markdown(results)
    write_sync_report(output, results)
    if as_json:
        emit_json(results)
    else:
        click.echo(section)


def _setting_changes(given: tuple[str, ...]) -> dict[str, Any]:
    """`--setting NAME=VALUE` pairs as `coordinator serve` parameters, each value of that option's type."""
    from agent.cli.coordinator import coordinator_serve

    params = {param.name: param for param in coordinator_serve.params}
    changes: dict[str, Any] = {}
    for pair in given:
        name, equals, value = pair.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not equals or name not in params:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE with NAME an option of `ownrec coordinator "
                                     "serve` (release-period=3600)", param_hint="--setting")
        param = params[name]
        if param.is_flag:
            changes[name] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            try:
                changes[name] = param.type.convert(value.strip(), param, None)
            except click.BadParameter as error:
                raise click.BadParameter(f"{pair!r}: {error.message}", param_hint="--setting") from None
    return changes


@click.group("eval", cls=SectionedGroup, invoke_without_command=True)
@click.option("--quick", is_flag=True, help="150 users, 2 rounds, epsilon 4 only (as here and 8x larger), a short "
                                           "MF: a few minutes (CI).")
@click.option("--users", type=click.IntRange(30, 943), default=None,
              help="Evaluate a fixed random subset of this many users [default: all 943; --quick: 150].")
@click.option("--rounds", type=click.IntRange(1, 100), default=None, help="Federated rounds [default: 3; --quick: 2].")
@click.option("--seed", type=int, default=0, show_default=True, help="The split's negatives and the subset.")
@click.option("--item-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The coordinator's item rate (item biases and residuals move this many times the cohort "
                   "average) for every federated row [default: 32 without noise, 1 with noise].")
@click.option("--local-epochs", type=click.IntRange(1, 100), default=None,
              help="Each device's local epochs per round for every federated row but the one-round variant "
                   "[default: 2 without noise, 5 (the client's) with noise].")
@click.option("--min-raters", type=click.IntRange(min=0), default=0, show_default=True,
              help="Every federated row shares an item's bias and residual only for items with at least this "
                   "many raters among everyone's training interactions (0: every item).")
@click.option("--larger-federation", type=click.IntRange(min=0), default=8, show_default=True,
              help="Also run epsilon 4 as one of a federation this many times larger: the users' average takes "
                   "the noise that so many people's average would carry (0 or 1: no such row).")
@click.option("--longer-rounds", type=click.IntRange(min=0), default=None,
              help="Also run the no-DP row for this many rounds (0: no such row) [default: 6; --quick: 0].")
@click.option("--adoption", type=click.Choice(["off", "on", "both"]), default="off", show_default=True,
              help="Each device's check before it uses a release (adopt it, a blend, or keep the version in use; "
                   "it holds out the person's latest likes): off (everyone scored with the newest release), on, or "
                   "both (each federated row twice; the check's rows end in ', device adoption check').")
@click.option("--only", multiple=True, metavar="TEXT",
              help="Run only the federated rows whose name ends with TEXT (repeatable), e.g. --only 'release 0, "
                   "no DP' --only 'release 0, DP epsilon 4'; the baselines and sync-off rows always run.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose eval section is replaced (the rest is kept); plots go "
                                      "to docs/evaluation/ beside it.")
@click.pass_context
@fail_cleanly
def eval_group(ctx: click.Context, quick: bool, users: int | None, rounds: int | None, seed: int,
               item_rate: float | None, local_epochs: int | None, min_raters: int, larger_federation: int,
               longer_rounds: int | None, adoption: str, only: tuple[str, ...], as_json: bool, output: Path) -> None:
    """Accuracy on MovieLens-100K: ownrec local, federated, with DP, and two baselines.

    The PFedRec protocol: HR@10 and NDCG@10, 1 + 99 sampled and full ranking. Rows: popularity,
    centralized MF; ownrec with sync off on the text alone, with the public signals, and with the
    signals and release 0 (cross-fitted over 5 folds of people: what scores a person is learned from
    the other folds' training data only); ownrec federated through the real client and coordinator
    code from zero and from release 0 (3 rounds without noise at the item rate 32 and 2 local epochs,
    and at the DP rows' 1 and 5, and 6 rounds at 32 and 2), with DP at epsilon 1, 4 and 8 (item rate 1,
    5 local epochs), epsilon 4 sharing only B_g and the biases, or in one round of more local work, and
    epsilon 4 in a federation 8 times larger (item rate 32).
    ownrec's rows score as the feed does, steered by the person's latest likes, and also show what
    they give without them. Writes EVALUATION.md's eval section and a privacy-utility plot. The full
    run takes about half an hour on 2 cores.

    `ownrec eval rerank`: whether the LLM's judgement improves the ranker's top 20."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import replace

    from agent.lab.evaluation.federated import QUICK, EvalSettings, run_evaluation
    from agent.lab.evaluation.report import write_eval_report
    from agent.lab.people import single_blas_thread

    settings = replace(QUICK if quick else EvalSettings(), seed=seed)
    if users is not None:
        settings = replace(settings, users=None if users == 943 else users)
    if rounds is not None:
        settings = replace(settings, rounds=rounds)
    if item_rate is not None:
        settings = replace(settings, item_rate=item_rate)
    if local_epochs is not None:
        settings = replace(settings, local_epochs=local_epochs)
    settings = replace(settings, min_raters=min_raters)
    settings = replace(settings, larger_federation=larger_federation)
    if longer_rounds is not None:
        settings = replace(settings, longer_rounds=longer_rounds)
    settings = replace(settings, adoption={"off": (False,), "on": (True,), "both": (False, True)}[adoption],
                       only=only)
    with single_blas_thread():
        results = run_evaluation(settings, log=echo_err)
    write_eval_report(results, output)
    if as_json:
        emit_json(results)
    else:
        for row in results["rows"]:
            click.echo(f"{row['name']:<40} HR@10 {row['hr10_sampled']:.3f}  NDCG@10 {row['ndcg10_sampled']:.3f}  "
                       f"full HR@10 {row['hr10_full']:.3f}  full NDCG@10 {row['ndcg10_full']:.3f}")
        click.echo(f"written to {output}")


@eval_group.command("rerank")
@click.option("--users", type=click.IntRange(1, 943), default=100, show_default=True,
              help="MovieLens users to evaluate (a fixed random subset for --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="llama.cpp (and torch) threads; on a busy 2-core machine 1 is fastest.")
@click.option("--lora-steps", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Also train a personal LoRA per user for this many steps and add a row with it (minutes per user).")
@click.option("--lora-users", type=click.IntRange(1, 943),
              help="The personal-LoRA row for only the first N of the evaluated users, compared with the base model "
                   "on the same N (default: all of them).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="A file each finished user is appended to: an interrupted run resumes from it.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose rerank section is replaced (the rest is kept).")
@fail_cleanly
def eval_rerank(users: int, seed: int, threads: int, lora_steps: int, lora_users: int | None, checkpoint: Path | None,
                as_json: bool, output: Path) -> None:
    """Does the LLM's yes/no judgement improve the ranker's top 20?

    NDCG@10 and HR@10, sampled (1 + 99 negatives) and full ranking, ranker alone against reranked,
    with the weight chosen on validation items only. The answer sets whether `llm.rerank` should be on."""
    import tempfile

    from agent.lab.evaluation import rerank as rerank_eval

    with tempfile.TemporaryDirectory(prefix="ownrec-eval-lora-") as folder:
        hook = None
        if lora_steps:
            from agent.lab.evaluation.lora import per_user_lora

            hook = per_user_lora(lora_steps, Path(folder), threads=threads, seed=seed)
        results = rerank_eval.run_rerank_evaluation(users=users, seed=seed, log=echo_err, threads=threads,
                                                    lora_for_user=hook, checkpoint=checkpoint, lora_users=lora_users)
    rerank_eval.write_report(results, output)
    if as_json:
        emit_json({k: v for k, v in results.items() if k != "cases"})
    else:
        click.echo(f"written to {output}; reranking {'helps' if rerank_eval.helps(results) else 'is not shown to help'}")


@click.command("audit")
@click.option("--quick", is_flag=True, help="300 users, epsilon 4 only: a few minutes (CI).")
@click.option("--users", type=click.IntRange(60, 943), default=None,
              help="Audit a fixed random subset of this many users [default: all 943; --quick: 300].")
@click.option("--cohort-size", type=click.IntRange(3, 200), default=20, show_default=True,
              help="The cohorts whose sums the server view shows (20: the coordinator's smallest).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose audit section is replaced (the rest is kept).")
@fail_cleanly
def audit(quick: bool, users: int | None, cohort_size: int, seed: int, as_json: bool, output: Path) -> None:
    """Can what leaves a device reveal who the person is? An attribute-inference attack.

    On MovieLens-100K, a linear classifier is trained on half of the users and tested on the other
    half, then the halves swap (the mean AUC), against gender, age and every inferred trait, on three
    views: the raw local delta, the clipped and noised upload, and the cohort sums the coordinator
    actually sees, without noise and at epsilon 1, 4 and 8, over 5 random splits. Writes
    EVALUATION.md's audit section and an attack-AUC plot. The full run takes about 15 minutes on
    2 cores."""
    from dataclasses import replace

    from agent.lab.evaluation.audit import QUICK_AUDIT, AuditSettings, run_audit
    from agent.lab.evaluation.report import write_audit_report
    from agent.lab.people import single_blas_thread

    settings = replace(QUICK_AUDIT if quick else AuditSettings(), seed=seed, cohort_size=cohort_size)
    if users is not None:
        settings = replace(settings, users=None if users == 943 else users)
    with single_blas_thread():
        results = run_audit(settings, log=echo_err)
    write_audit_report(results, output)
    if as_json:
        emit_json(results)
    else:
        for view in results["views"]:
            eps = "" if view["view"] == "raw delta" else f" at epsilon {view['epsilon'] or 'inf (no noise)'}"
            click.echo(f"{view['view']}{eps}: " + ", ".join(f"{t} {r['auc']:.3f}" for t, r in view["results"].items()
                                                              if not t.startswith("trait:")))
        click.echo(f"written to {output}")


@click.command("validate")
@click.option("--quick", is_flag=True, help="A sample of users and fewer training epochs (for CI).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The Markdown report to write (its traits section is replaced).")
@fail_cleanly
def traits_validate(quick: bool, as_json: bool, output: Path) -> None:
    """Check that the traits measure what they claim, on MovieLens-100K; write EVALUATION.md."""
    from agent.lab.validation.traits import run_validation, write_report

    results = run_validation(quick=quick, log=echo_err)
    markdown = write_report(results, output)
    emit_json(results) if as_json else click.echo(markdown)


@eval_group.command("chat")
@click.option("--max-tokens", type=click.IntRange(16, 2048), default=None,
              help="The longest generated reply, in tokens [default: the llm.max_tokens setting's default].")
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="llama.cpp threads [default: llm.threads].")
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A demo database prepared earlier (the lab's demo template), to skip encoding the catalog.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose chat section is replaced (the rest is kept).")
@fail_cleanly
def eval_chat(max_tokens: int | None, threads: int | None, template: Path | None, as_json: bool, output: Path) -> None:
    """Does the chat say only what is true, from the right source?

    Scripted sessions of simulated people on the demo catalog, through the real answer path and the
    default language model; every answer checked by an independent verifier (titles, years, genres,
    "you liked X", traits, reasons, why- and about-me figures), pinned traits checked after every step.
    Also reports what a +0.3 trait edit does to the top 20. About half an hour on 2 busy cores."""
    from agent.lab.people import single_blas_thread
    from agent.lab.validation.chat import sessions

    with single_blas_thread():
        results = sessions.run_sessions(log=echo_err, max_tokens=max_tokens, threads=threads, template=template)
    section = sessions.write_report(results, output)
    if as_json:
        emit_json(sessions.as_json(results))
    else:
        click.echo(section)
