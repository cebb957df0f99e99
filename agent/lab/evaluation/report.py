"""The EVALUATION.md sections of `ownrec eval` and `ownrec audit`, and their PNG plots.

Plots are drawn with matplotlib (the `eval` extra; headless Agg backend) into `<report folder>/docs/
evaluation/`, written temp-then-rename like every other file ownrec writes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from agent.core.atomic import write_bytes_atomic
from agent.federation.neighbourhood import plan_neighbourhood
from agent.lab.reports import measured_where, write_section
from agent.lab.evaluation.federated import (ADOPTION, ITEM_RATE_WITH_NOISE, ITEM_RATE_WITHOUT_NOISE,
                                            LOCAL_EPOCHS_WITH_NOISE, LOCAL_EPOCHS_WITHOUT_NOISE, NO_DP, NO_DP_AS_DP_ROWS, SYNC_OFF, federated_name, longer_rounds_name)

EVAL_BEGIN, EVAL_END = "<!-- eval:begin -->", "<!-- eval:end -->"
AUDIT_BEGIN, AUDIT_END = "<!-- audit:begin -->", "<!-- audit:end -->"
HEADER = ("# Evaluation\n\nFigures measured by ownrec's own commands on this repository's code. Each section is "
          "written by the command named in it, and only that section is replaced when the command runs again.\n")
PLOTS = Path("docs") / "evaluation"


class PlotsUnavailable(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("matplotlib is not installed: `pip install -e '.[eval]'` (packaging/bootstrap.sh "
                               "installs it)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())


def _stamp(results: dict[str, Any], command: str) -> str:
    where = results.get("measured") or measured_where()
    commit = where["commit"] or "unknown commit"
    if where["uncommitted_changes"]:
        commit += " plus uncommitted changes"
    return (f"Written by `{command}` on {where['at']}: commit {commit}, {where['cpus']} CPUs, Python "
            f"{where['python']}, wall time {results['seconds']:.0f} s.")


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _eps(row: dict[str, Any]) -> float | None:
    return row.get("epsilon")


def _scale(row: dict[str, Any]) -> int:
    """0 for a row of the users evaluated; else the federation size it stands for, as a multiple of them."""
    return row.get("federation_scale", 0)


def _epsilon_axis(axis, epsilons: list[float]) -> None:
    axis.set_xscale("log")
    ticks = sorted(set(epsilons))
    if ticks:
        axis.set_xticks(ticks, [f"{e:g}" for e in ticks])
        axis.minorticks_off()
    axis.set_xlabel("epsilon per user (delta 1e-4)")


# -- ownrec eval --------------------------------------------------------------------------------------


def plot_privacy_utility(results: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = results["rows"]
    dp = sorted((r for r in rows if _eps(r) is not None and not _scale(r)), key=_eps)
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    if dp:
        axis.plot([_eps(r) for r in dp], [r["ndcg10_sampled"] for r in dp], "o-", label="ownrec federated + DP")
    for row in rows:
        if _scale(row):
            axis.plot([_eps(row)], [row["ndcg10_sampled"]], "*", markersize=12, color="tab:purple",
                      label=f"the same in a federation {_scale(row)}x larger (item rate {_rate(row)})")
    styles = {NO_DP: ("tab:green", "--"), NO_DP_AS_DP_ROWS: ("tab:olive", ":"),
              SYNC_OFF["text"]: ("tab:gray", ":"), SYNC_OFF["prior"]: ("tab:blue", ":"),
              "popularity": ("tab:red", "-.")}
    for row in rows:
        if row["name"] in styles:
            colour, line = styles[row["name"]]
            axis.axhline(row["ndcg10_sampled"], color=colour, linestyle=line, label=row["name"])
    _epsilon_axis(axis, [_eps(r) for r in dp])
    axis.set_ylabel("test NDCG@10 (1 + 99 sampled)")
    axis.set_title(f"Privacy and utility, MovieLens-100K ({results['settings']['users']} users)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    _save(figure, path)
    plt.close(figure)


def _shared_part(settings: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    k = settings.get("residual_rank", 0)
    what = f"B_g, the item biases and {k}-d item residuals" if k else "B_g and the item biases"
    if settings.get("min_raters"):
        shared = max((row["parameters"] for row in rows if row.get("parameters")), default=0)
        return (f"{what} of the items with at least {settings['min_raters']} raters among everyone's training "
                f"interactions, `--min-raters`: {shared:,} numbers of the full layout's "
                f"{settings.get('parameters', 7826):,}")
    return f"{what}: {settings.get('parameters', 7826):,} numbers"


def eval_markdown(results: dict[str, Any], plot: str | None) -> str:
    s = results["settings"]
    lines = ["## Accuracy under federation and DP (MovieLens-100K)", "", _stamp(results, "ownrec eval" + (
        "" if s["users"] == 943 else f" (--quick: {s['users']} users)")), "",
        "Protocol (PFedRec's; `agent/lab/protocol`): per user, by time, the latest interaction is "
        "the test item and the one before the validation item; the test item is ranked among 99 sampled items the "
        "user never interacted with (fixed seed) and, in full ranking, among every item not in their training "
        "set. Federated rows: every user takes part in each of "
        f"{s['rounds']} rounds, uploading Delta phi_g ({_shared_part(s, results['rows'])}) through the real "
        "client stages and the real coordinator (in one process, no HTTP): clipped to "
        f"C = {s['clip_norm']:g}, noised, quantized, masked, summed, unmasked, averaged; the coordinator moves B_g by "
        "the average and the item biases and residuals by `item rate` times it ("
        + ("32 without noise: an item's row learns who likes it only from the people who rated it, and the average "
           "divides that by everyone; 1 with noise, which the rate would multiply as well"
           if s.get("item_rate") is None else f"{s['item_rate']:g} in every row: `--item-rate`")
        + "). Each device trains its delta for "
        + (f"{LOCAL_EPOCHS_WITHOUT_NOISE} local epochs per round without noise (less drift from the average it joins) "
           f"and the client's {LOCAL_EPOCHS_WITH_NOISE} with noise (more signal against the round's fixed noise; a "
           "deployed device refuses rounds without noise)"
           if s.get("local_epochs") is None else f"{s['local_epochs']} local epochs per round in every row: "
           "`--local-epochs`")
        + ". DP rows add the distributed "
        "Gaussian noise whose multiplier gives each user the stated epsilon over the rounds (exact Gaussian accountant, "
        f"delta {s['target_delta']:g}; every user joins every round, no sampling amplification claimed). "
        + ("The coordinator shrinks each noised average against its known noise before applying it (B_g; from "
           "release 0 also all item rows together and each item's row: positive-part James-Stein; "
           "post-processing). "
           if s.get("shrink_noise") else "")
        + ("After each round each person refits their personal adapter under the new global part exactly as sync "
           "off fits it (on-device, no noise). " if not s['finetune_epochs'] else
           f"After each round each person fine-tunes their personal adapter ({s['finetune_epochs']} more epochs, "
           "on-device, no noise). ")
        + "ownrec's rows score as the product does: the person's latest likes steer their user vector (u = p + "
        f"{s.get('recent_weight', 2.0):g} x the mean of the {s.get('recent_items', 3)} latest liked items' vectors"
        + (f", weighted by recency: the newest 1, each older one {s['recent_decay']:g} times the next"
           if s.get("recent_decay", 1.0) != 1.0 else "") + "; computed on the "
        "device; nothing is trained or shared for it), and at each held-out item the latest likes are the "
        "interactions made before it: for the test item, the validation item too, which no model trains on. "
        "Reported: the test figures of the checkpoint with the best validation HR@10.", "",
        "What each row starts from (its name says it): *text only*, the items' text alone (as ownrec was before "
        "the public foundation); *public signals*, plus each film's number of ratings, mean rating and release year "
        "as item signals, weighted by the person's own learned weights (starting at "
        + ", ".join(f"{w:g}" for w in s.get("signal_weights", [])) + " for popularity, rating, recency); "
        "*release 0*, plus the global part phi_g (B_g, the item biases and residuals) learned centrally from public "
        f"interactions ({s.get('prior', {}).get('epochs', '?')} epochs of BPR, Adam)"
        + (", and what people went on to like after each item, from the same interactions in time order (the items "
           f"rated within the next {s['co_liked']['window']}, {s['co_liked']['neighbours']} kept per item; the "
           f"person's {s['co_liked']['items']} latest likes add it at {s['co_liked']['weight']:g} of the spread of "
           "their scores)" if "co_liked" in s else "") + ". Honest by construction: "
        f"the {s.get('folds', 5)} folds of people are cross-fitted, so the signals and release 0 that score a person "
        "are counted and learned from the other folds' people's training interactions only: no one's held-out items, "
        "and nothing of their own, enter what they are scored with. The federated rows from release 0 federate a "
        "refinement on top of it (each device trains its delta from its own fold's release 0 plus the federation's "
        "vector; in the product every device has the same release 0 and the coordinator starts from it).", "",
        "| model | HR@10 | NDCG@10 | full HR@10 | full NDCG@10 | epsilon | item rate | local epochs | checkpoint "
        "| time |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        eps = row.get("epsilon", "")
        eps = "∞ (no noise)" if "epsilon" in row and eps is None else ("" if eps == "" else f"{eps:g}")
        lines.append(f"| {row['name']} | {_f(row['hr10_sampled'])} | {_f(row['ndcg10_sampled'])} | "
                     f"{_f(row['hr10_full'])} | {_f(row['ndcg10_full'])} | {eps} | {_rate(row)} | "
                     f"{row.get('local_epochs') or ''} | {row.get('chosen', '')} | {row['seconds']:.0f} s |")
    for row in results["reference_rows"]:
        lines.append(f"| *{row['name']}: measured outside ownrec ({row.get('source', 'reference runs')})* | "
                     f"{_f(row['hr10_sampled'])} | "
                     f"{_f(row['ndcg10_sampled'])} | {_f(row['hr10_full'])} | {_f(row['ndcg10_full'])} | | | | | |")
    lines += context_table(results)
    lines += people_table(results)
    lines += ["", *findings(results)]
    if plot:
        lines += ["", f"![NDCG@10 against epsilon]({plot})"]
    return "\n".join(lines)


def context_table(results: dict[str, Any]) -> list[str]:
    """Each ownrec row's test figures with less of the person's latest likes than the product uses."""
    rows = [row for row in results["rows"] if row.get("test_by_context")]
    if not rows:
        return []
    lines = ["", "What the latest likes add: each ownrec row's chosen checkpoint, test HR@10 / NDCG@10 (full HR@10), "
             "scored with the latest likes as the product does (the table above), with the training items only as "
             "the latest likes (the validation item left out), and with no latest likes at all (the model alone).", "",
             "| model | latest likes (as above) | training items only | none |", "|---|---|---|---|"]
    for row in rows:
        cells = [row, *(row["test_by_context"].get(context) for context in ("training", "none"))]
        lines.append(f"| {row['name']} | " + " | ".join(
            "" if c is None else f"{_f(c['hr10_sampled'])} / {_f(c['ndcg10_sampled'])} ({_f(c['hr10_full'])})"
            for c in cells) + " |")
    return lines


def people_table(results: dict[str, Any]) -> list[str]:
    """Per federated row: how many people it serves worse than sync off, and, with the device's adoption check,
    what the devices did with each round's release."""
    rows = [row for row in results["rows"] if row.get("people_against_sync_off")]
    if not rows:
        return []
    lines = ["", f"Person by person, of {results['settings']['users']}: whose test NDCG@10 fell / rose against sync off "
             "on the same foundation (the chosen checkpoint), and, with the device's adoption check, the share of "
             "devices that adopted / blended / kept each round's release (`agent.core.sync.adoption`).", "",
             "| model | fell / rose (sampled) | fell / rose (full) | adopted / blended / kept per round |",
             "|---|---|---|---|"]
    for row in rows:
        people = row["people_against_sync_off"]
        rounds = "; ".join(f"{a['adopted']:.2f} / {a['blended']:.2f} / {a['kept']:.2f}"
                           for a in (h["adoption"] for h in row.get("history", []) if "adoption" in h))
        lines.append(f"| {row['name']} | {people['sampled']['fell']} / {people['sampled']['rose']} | "
                     f"{people['full']['fell']} / {people['full']['rose']} | {rounds} |")
    return lines


def _rate(row: dict[str, Any]) -> str:
    rate = row.get("item_learning_rate")
    return "" if rate is None else f"{rate:g}"


def _row(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in results["rows"] if r["name"] == name), None)


def _pair(row: dict[str, Any] | None) -> str:
    return "—" if row is None else f"{row['hr10_sampled']:.3f} / {row['ndcg10_sampled']:.3f} (full HR@10 {row['hr10_full']:.3f})"


def _at_least(row: dict[str, Any], bar: dict[str, Any], full: bool = True) -> bool:
    ok = row["hr10_sampled"] >= bar["hr10_sampled"] and row["ndcg10_sampled"] >= bar["ndcg10_sampled"]
    return ok and (not full or row["hr10_full"] >= bar["hr10_full"])


def findings(results: dict[str, Any]) -> list[str]:
    """What the numbers say against issue 18's targets, computed from them and from the reference measurements
    named in the text."""
    out = []
    rows = results["rows"]
    pop = _row(results, "popularity")
    mf = next((r for r in rows if r["name"].startswith("centralized BPR-MF")), None)
    text, signals, prior = (_row(results, SYNC_OFF[key]) for key in ("text", "signals", "prior"))
    fed, fed_zero = _row(results, NO_DP), _row(results, federated_name("text"))
    if prior and mf and pop:
        out.append(f"- Sync off (the default): text only {_pair(text)}; with the public signals {_pair(signals)}; with "
                   f"the public signals and release 0 {_pair(prior)}. Against centralized BPR-MF {_pair(mf)} in the same "
                   "run (target: at least it, sampled and full): " + ("**met**" if _at_least(prior, mf) else "**missed**")
                   + f"; popularity {_pair(pop)}.")
    if fed and prior:
        out.append(f"- Federated from release 0 without noise: {_pair(fed)} (target >= 0.75 / 0.47: "
                   + ("met" if fed["hr10_sampled"] >= 0.75 and fed["ndcg10_sampled"] >= 0.47 else "**missed**")
                   + f"). The federation's own contribution on top of release 0: {fed['hr10_sampled'] - prior['hr10_sampled']:+.3f}"
                   f" HR@10 / {fed['ndcg10_sampled'] - prior['ndcg10_sampled']:+.3f} NDCG@10 (full "
                   f"{fed['hr10_full'] - prior['hr10_full']:+.3f}).")
    if fed_zero and text:
        out.append(f"- Without the prior (text only, as before this foundation existed): sync off {_pair(text)}, "
                   f"federated {_pair(fed_zero)}.")
    longer = _row(results, longer_rounds_name(results["settings"].get("longer_rounds") or 0))
    if longer:
        out.append(f"- {longer['rounds']} rounds from release 0 without noise: {_pair(longer)}.")
    users = results["settings"]["users"]
    survivors = plan_neighbourhood(users).min_survivors
    for row in rows:
        if _eps(row) is None:
            continue
        # A row with the device's adoption check is set against the no-DP row with it: like for like.
        check = ADOPTION if row["name"].endswith(ADOPTION) else ""
        base = _row(results, (NO_DP if row.get("foundation", "prior") == "prior" else federated_name("text")) + check)
        floor = prior if row.get("foundation", "prior") == "prior" else text
        if not base or base["ndcg10_sampled"] <= 0:
            continue
        change = (row["ndcg10_sampled"] - base["ndcg10_sampled"]) / base["ndcg10_sampled"]
        if _scale(row):
            out.append(f"- DP at epsilon {_eps(row):g} for each of {_scale(row) * users:,} people ({_scale(row)}x the "
                       f"{users} here, with the same tastes over the same catalog; noise multiplier "
                       f"{row['simulated_noise_multiplier']:.3f} instead of {row['noise_multiplier']:.2f}), item rate "
                       f"{row['item_learning_rate']:g}: NDCG@10 {row['ndcg10_sampled']:.3f}, {100 * change:+.1f}% "
                       "relative to no DP.")
            continue
        std = row["noise_multiplier"] * results["settings"]["clip_norm"] / math.sqrt(survivors) / math.sqrt(users)
        verdict = ""
        if row.get("foundation", "prior") == "prior" and floor:
            within = change >= -0.05 if abs(_eps(row) - 4.0) < 1e-9 else True
            above = row["ndcg10_sampled"] >= floor["ndcg10_sampled"]
            verdict = ("; target: " + ("within 5% of no DP: " + ("met" if within else "**missed**") + ", "
                                       if abs(_eps(row) - 4.0) < 1e-9 else "")
                       + "not below sync off (" + f"{floor['ndcg10_sampled']:.3f}): " + ("met" if above else "**missed**"))
        elif floor:  # from zero: the sync off of a catalog without public ratings, which no target names
            verdict = (f"; against sync off on the text alone ({floor['ndcg10_sampled']:.3f}): "
                       + ("not below" if row["ndcg10_sampled"] >= floor["ndcg10_sampled"] else "**below**"))
        same_rate = _row(results, NO_DP_AS_DP_ROWS + check) if row.get("foundation", "prior") == "prior" else None
        if (same_rate and same_rate["ndcg10_sampled"] > 0 and all(row.get(k) == same_rate.get(k) for k in (
                "item_learning_rate", "local_epochs"))):
            like = (row["ndcg10_sampled"] - same_rate["ndcg10_sampled"]) / same_rate["ndcg10_sampled"]
            verdict += f"; {100 * like:+.1f}% relative to no noise at the same item rate and local epochs"
        out.append(f"- {row['name']} (noise multiplier {row['noise_multiplier']:.2f}; the released average of the "
                   f"{users} updates carries noise of sd {std:.4f} per parameter): {_pair(row)}, NDCG@10 "
                   f"{100 * change:+.1f}% relative to the same start without noise{verdict}.")
    dp_rows = [r for r in rows if _eps(r) is not None and not _scale(r) and r.get("foundation", "prior") == "prior"]
    if dp_rows and _row(results, NO_DP_AS_DP_ROWS):
        out += ["", f"What the DP rows say: run as they are (item rate {ITEM_RATE_WITH_NOISE:g}, {LOCAL_EPOCHS_WITH_NOISE} "
                "local epochs), the noise itself costs almost nothing once release 0 is in place (the last figure of "
                "each line above); the gap to the no-DP row is what that row runs without noise: the item rate "
                f"{ITEM_RATE_WITHOUT_NOISE:g}, which would multiply the noise as well as the signal, and "
                f"{LOCAL_EPOCHS_WITHOUT_NOISE} local epochs, which would put less signal against it. Sharing fewer "
                "numbers (B_g and the biases "
                "only) and one round of more local work instead of three each land within the same range. Adaptive "
                "clipping at its best (C fixed at the quantile of the update norms it would move to, its private "
                "estimate free) does no better than C = 10 (measured outside this table: \"Adaptive clipping at its "
                "best\")."]
    out += signal_markdown(results.get("signal"))
    accounting = results["settings"].get("accounting") or []
    if accounting:
        out += ["", f"Accounting, side by side: the noise multiplier each epsilon needs over {results['settings']['rounds']} "
                f"rounds in which every person takes part (delta {results['settings']['target_delta']:g}): exact "
                "Gaussian-DP accounting (what ownrec uses) against RDP's bound.", "",
                "| epsilon | exact (GDP) | RDP | noise saved |", "|---|---|---|---|"]
        out += [f"| {a['epsilon']:g} | {a['exact']:.3f} | {a['rdp']:.3f} | {100 * (1 - a['exact'] / a['rdp']):.1f}% |"
                for a in accounting]
    return out


def signal_markdown(signal: dict[str, Any] | None) -> list[str]:
    """The table of `signal.signal_and_noise`: what round 1's average carries against each epsilon's noise."""
    if not signal:
        return []
    norm = signal["signal_norm"]
    out = ["", f"What a round's average carries against its noise (`agent/lab/evaluation/signal.py`): round 1 from "
           f"release 0, the {signal['people']:,} people's deltas clipped to C as uploaded (median norm before "
           f"clipping {signal['median_norm_before_clipping']:.2f}); their plain average has norm {norm['B_g']:.3f} "
           f"in B_g and {norm['items']:.3f} in the item rows. Errors are against that average, for one draw of "
           "each epsilon's noise: as it came, and after the coordinator's shrinkage (publishing nothing would be "
           "off by the signal's own norm).", "",
           "| epsilon | noise sd per number | noise norm B_g / items | item rows above their noise | error B_g: "
           "raw / shrunk | error items: raw / shrunk | shrink factor B_g / items |", "|---|---|---|---|---|---|---|"]
    for e in signal["epsilons"]:
        out.append(f"| {e['epsilon']:g} | {e['noise_std']:.4f} | {e['noise_norm']['B_g']:.2f} / "
                   f"{e['noise_norm']['items']:.2f} | {100 * e['rows_above_noise']:.1f}% | {e['raw_error']['B_g']:.3f} / "
                   f"{e['shrunk_error']['B_g']:.3f} | {e['raw_error']['items']:.3f} / {e['shrunk_error']['items']:.3f} | "
                   f"{e['adapter_factor']:.3f} / {e['items_factor']:.3f} |")
    return out


# -- ownrec audit -------------------------------------------------------------------------------------


def _mean_trait_auc(view: dict[str, Any]) -> float:
    values = [r["auc"] for name, r in view["results"].items() if name.startswith("trait:")]
    return sum(values) / len(values) if values else float("nan")


def plot_attack(results: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    raw = next(v for v in results["views"] if v["view"] == "raw delta")
    attributes = [t for t in results["targets"] if not t.startswith("trait:")]
    colours = dict(zip(attributes + ["traits (mean)"], ["tab:blue", "tab:orange", "tab:purple"]))
    for kind, marker in (("upload", "s"), ("server", "o")):
        views = sorted((v for v in results["views"] if v["view"].startswith(kind) and v["epsilon"] is not None),
                       key=lambda v: v["epsilon"])
        if not views:
            continue
        xs = [v["epsilon"] for v in views]
        for target in attributes:
            axis.plot(xs, [v["results"][target]["auc"] for v in views], marker=marker, color=colours[target],
                      linestyle="-" if kind == "server" else "--", label=f"{kind}: {target}")
        axis.plot(xs, [_mean_trait_auc(v) for v in views], marker=marker, color=colours["traits (mean)"],
                  linestyle="-" if kind == "server" else "--", label=f"{kind}: traits (mean)")
    for target in attributes:
        axis.axhline(raw["results"][target]["auc"], color=colours[target], linestyle=":", alpha=0.7)
    axis.axhline(0.5, color="black", linewidth=0.8)
    axis.axhline(0.55, color="tab:red", linewidth=0.8, linestyle="--", alpha=0.5)
    _epsilon_axis(axis, [v["epsilon"] for v in results["views"] if v["epsilon"] is not None])
    axis.set_ylabel("attack AUC (0.5 = chance)")
    axis.set_title("Attribute inference from what leaves a device (dotted: raw delta)")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(alpha=0.3)
    _save(figure, path)
    plt.close(figure)


def audit_markdown(results: dict[str, Any], plot: str | None) -> str:
    s = results["settings"]
    attributes = [t for t in results["targets"] if not t.startswith("trait:")]
    halves = " and ".join(str(n) for n in s["halves"])
    lines = ["## Personality leakage audit: what can an attacker learn from what leaves a device?", "",
             _stamp(results, "ownrec audit" + ("" if s["users"] == 943 else f" (--quick: {s['users']} users)")), "",
             f"Attacker (`agent/lab/evaluation/audit.py`): a linear classifier (ridge on standardised features, penalty by "
             f"5-fold cross-validation) trained on one half of the users and tested on the other ({halves}), then the "
             f"halves swap; over {s['repeats']} random splits, the AUC is the mean of the {2 * s['repeats']} folds, with "
             "a 95% bootstrap interval over test users. Targets: the real MovieLens attributes and each "
             "inferred trait value (above or below its median). Views: the *raw delta* (never leaves the device), the "
             f"*upload* (clipped to C = {s['clip_norm']:g} and noised with one client's share of the distributed noise, "
             "for a cohort of everyone: what masking hides), and the *server* view: the unmasked sums of cohorts of "
             f"{s['cohort_size']} run through the real coordinator, the smallest cohort it allows (new cohorts and new "
             "noise for each split). Noise as in "
             f"`ownrec eval` ({s['rounds']} rounds); each epsilon's views draw their own noise, so the rows are "
             "separate experiments.", "",
             "| view | epsilon | " + " | ".join(attributes) + " | traits: mean AUC | traits: max AUC |",
             "|---|---|" + "---|" * (len(attributes) + 2)]
    for view in results["views"]:
        cells = [f"{view['results'][t]['auc']:.3f} [{view['results'][t]['low']:.2f}, {view['results'][t]['high']:.2f}]"
                 for t in attributes]
        traits = [r["auc"] for name, r in view["results"].items() if name.startswith("trait:")]
        eps = "—" if view["view"] == "raw delta" else ("∞ (no noise)" if view["epsilon"] is None else f"{view['epsilon']:g}")
        lines.append(f"| {view['view']} | {eps} | " + " | ".join(cells)
                     + f" | {sum(traits) / len(traits):.3f} | {max(traits):.3f} |")
    lines += ["", "Per trait (AUC):", "", "| view | epsilon | " + " | ".join(results["traits"]) + " |",
              "|---|---|" + "---|" * len(results["traits"])]
    for view in results["views"]:
        eps = "—" if view["view"] == "raw delta" else ("∞" if view["epsilon"] is None else f"{view['epsilon']:g}")
        lines.append(f"| {view['view']} | {eps} | " + " | ".join(
            f"{view['results'][f'trait: {t}']['auc']:.2f}" for t in results["traits"]) + " |")
    lines += ["", *audit_findings(results)]
    if plot:
        lines += ["", f"![attack AUC against epsilon]({plot})"]
    return "\n".join(lines)


def audit_findings(results: dict[str, Any]) -> list[str]:
    out = []
    raw = next(v for v in results["views"] if v["view"] == "raw delta")
    best_raw = max(raw["results"].items(), key=lambda kv: kv[1]["auc"])
    out.append(f"- The attack works: on the raw delta it reaches AUC {best_raw[1]['auc']:.3f} for {best_raw[0]} "
               f"(interval {best_raw[1]['low']:.2f}–{best_raw[1]['high']:.2f}).")
    plain = next((v for v in results["views"] if v["view"].startswith("server") and v["epsilon"] is None), None)
    if plain:
        worst = max(plain["results"].items(), key=lambda kv: kv[1]["auc"])
        out.append(f"- Secure aggregation alone (sums of {results['settings']['cohort_size']}, no noise) leaves a "
                   f"little: the highest AUC is {worst[1]['auc']:.3f} ({worst[0]})."
                   + _against_chance(plain, worst[1]["auc"]))
    for view in results["views"]:
        if view["view"].startswith("upload") and view["epsilon"] is not None:
            mean = _mean_trait_auc(view)
            reading = ("still gives traits away: the distributed noise protects the sum, and the masks protect "
                       "each upload" if mean > 0.55 else "near chance on its own")
            out.append(f"- A single upload at epsilon {view['epsilon']:g} (one client's share of the noise, sd "
                       f"{view['noise_std']:.3f} per parameter): traits at mean AUC {mean:.3f}, {reading}.")
    for view in results["views"]:
        if view["view"].startswith("server") and view["epsilon"] is not None:
            worst = max(view["results"].items(), key=lambda kv: kv[1]["auc"])
            verdict = "within" if worst[1]["auc"] <= 0.55 else "**above**"
            out.append(f"- Server view at epsilon {view['epsilon']:g}: the highest AUC over all targets is "
                       f"{worst[1]['auc']:.3f} ({worst[0]}), {verdict} the 0.55 target."
                       + _against_chance(view, worst[1]["auc"]))
    return out


def _against_chance(view: dict[str, Any], observed: float) -> str:
    """The view's highest AUC against the same attack on shuffled labels (empty if it was not measured)."""
    null = view.get("chance_of_highest")
    if not null:
        return ""
    return (f" By chance alone (labels shuffled across users, {null['permutations']} times) the highest of the "
            f"{len(view['results'])} AUCs has median {null['median']:.3f} and 95th percentile {null['p95']:.3f}; "
            f"the share of shuffles reaching {observed:.3f} (the observed counted as one) is {null['p_value']:.3f}"
            + (", so this is within chance." if null["p_value"] >= 0.05 else ", so this is **more than chance**."))


def _write(output: Path, begin: str, end: str, markdown, plotter, plot_name: str, results: dict[str, Any],
           plots: bool) -> str:
    """Draw the plot beside `output` (under docs/evaluation/), then replace the command's section."""
    plot = None
    if plots:
        relative = PLOTS / plot_name
        plotter(results, output.parent / relative)
        plot = relative.as_posix()
    return write_section(output, begin, end, markdown(results, plot), HEADER)


def write_eval_report(results: dict[str, Any], output: Path, plots: bool = True) -> str:
    return _write(output, EVAL_BEGIN, EVAL_END, eval_markdown, plot_privacy_utility, "privacy-utility.png", results,
                  plots)


def write_audit_report(results: dict[str, Any], output: Path, plots: bool = True) -> str:
    return _write(output, AUDIT_BEGIN, AUDIT_END, audit_markdown, plot_attack, "attack-auc.png", results, plots)
