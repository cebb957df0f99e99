"""The traits section of EVALUATION.md: `to_markdown` renders the figures `run_validation` returns, with plain
sentences drawn from them; `write_report` replaces only that section (between the `traits` markers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.lab.reports import write_section
from agent.lab.validation.traits.common import EDIT_BOUNDS, LONG_TAIL_RANK, PASS_HIGH, PASS_LOW, POLE_SHARE, PROXIES

BEGIN = "<!-- traits:begin -->"
END = "<!-- traits:end -->"
HEADER = (
    "# Evaluation\n\n"
    "Figures measured by ownrec's own commands on this repository's code. Each section is written by\n"
    "the command named in it, and only that section is replaced when the command runs again.\n"
)


def write_report(results: dict[str, Any], path: Path | str) -> str:
    """Write (or replace) the traits section of the Markdown report at `path`, keeping everything
    else; create the file with a short header if it is missing. Returns the section."""
    return write_section(path, BEGIN, END, to_markdown(results), HEADER)


def _ci(entry: dict[str, Any] | None, key: str = "pearson") -> str:
    if not entry or entry.get(key) is None:
        return "—"
    low, high = entry[f"{key}_ci"]
    return f"{entry[key]:+.2f} [{low:+.2f}, {high:+.2f}]"


def _verdict(entry: dict[str, Any]) -> str:
    r, (low, high) = entry["pearson"], entry["pearson_ci"]
    if high < 0:
        return "opposite"
    if low <= 0:
        return "no"
    if r >= 0.3:
        return "yes"
    return "weakly"


def _second_text(trait_id: str) -> str:
    proxy = PROXIES[trait_id]
    if proxy.statistic == "popularity":
        return {"long_tail": f"share of liked films outside the {LONG_TAIL_RANK} most-rated",
                "entropy": "entropy of the genres of liked films"}[proxy.second]
    return f"share in {'/'.join(proxy.high)} minus share in {'/'.join(proxy.low)}"


def _proxy_text(trait_id: str) -> str:
    proxy = PROXIES[trait_id]
    if proxy.statistic == "popularity":
        return f"minus mean log(#ratings) of liked films; 2nd: {_second_text(trait_id)}"
    return f"share of liked films in {'/'.join(proxy.high)}; 2nd: that share minus the share in {'/'.join(proxy.low)}"


def to_markdown(results: dict[str, Any]) -> str:
    plan, run, timings = results["plan"], results["run"], results["timings_s"]
    names = {t["id"]: t["name"] for t in results["traits"]}
    ids = [t["id"] for t in results["traits"]]
    poles, ml, edits, feed = results["pole_users"], results["movielens"], results["edits"], results["feed"]
    commit = run.get("commit") or "unknown"
    if run.get("uncommitted_changes"):
        commit += " plus uncommitted changes"
    lines = [
        "## Traits: do they measure what they claim?",
        "",
        f"Written by `ownrec traits validate{' --quick' if plan['quick'] else ''}` on {run['at']}: commit {commit} "
        f"(trait code sha256 {run['trait_code_sha256']}), seed {plan['seed']}, {run['cpus']} CPUs, Python "
        f"{run['python']}, numpy {run['numpy']}. Wall time {timings['total']:.0f} s (setup {timings['setup']:.0f} s, "
        f"(a) {timings['pole_users']:.0f} s, (b)+(c) {timings['movielens']:.0f} s, (c)+(d) through the product "
        f"{timings['feed_and_product_edits']:.0f} s).",
        "",
        "Everything runs in a temporary data directory with the real encoder on the MovieLens-100K demo catalog "
        "(1,682 films; an item's text is its title, year and genres)."
        + (f" What a value is (from `agent/core/traits/axes.py`): {run['value_definition']}"
           if run.get("value_definition") else ""),
        "",
        "### (a) Simulated users who like one pole",
        "",
        f"Pole films: the top (bottom) {POLE_SHARE:.0%} of the catalog on the trait's axis. A simulated user likes "
        f"{poles['likes']} random films of one pole (variant 2: and dislikes {poles['dislikes']} of the other), "
        "through `feedback` and `retrain`; the value is what `ownrec traits` shows. "
        f"{poles['seeds']} seed(s) per cell. Target: high-pole users >= {PASS_HIGH}, low-pole users <= {PASS_LOW}.",
        "",
        "| trait | likes high: mean (min) | likes low: mean (max) | + dislikes, high: mean (min) | "
        "+ dislikes, low: mean (max) | other traits: mean gap | moves most with it |",
        "|---|---|---|---|---|---|---|",
    ]
    for trait_id in ids:
        e = poles["per_trait"][trait_id]
        other = e["most_moved_other"]
        lines.append(
            f"| {names[trait_id]} | {e['high_likes']['mean']:.2f} ({e['high_likes']['min']:.2f}) | "
            f"{e['low_likes']['mean']:.2f} ({e['low_likes']['max']:.2f}) | "
            f"{e['high_likes_dislikes']['mean']:.2f} ({e['high_likes_dislikes']['min']:.2f}) | "
            f"{e['low_likes_dislikes']['mean']:.2f} ({e['low_likes_dislikes']['max']:.2f}) | "
            f"{e['off_target_gap_mean']:.2f} | {names[other['trait']]} ({other['gap']:+.2f}) |")
    lines += [
        "",
        f"{poles['passed']} of {poles['users']} pole users meet the target. \"Other traits: mean gap\" is how far apart "
        "the high- and low-pole users read on the *other* traits (mean absolute difference; their gap on the trait "
        f"itself is {np.mean([e['own_gap'] for e in poles['per_trait'].values()]):.2f} on average); the last column "
        "is the other trait that separates them most, with the sign of the gap.",
        "",
        f"### (b) {ml['users']} real MovieLens users: traits against what they liked",
        "",
        f"Each user's personal adapter is trained on their own ratings only (the product's labels: stars mapped by "
        f"`rating_signal`, 3 stars neutral; `fit` with {ml['epochs']} epochs, the product's settings otherwise). "
        f"Labels per user: median {ml['labels_per_user']['median']:.0f} (min {ml['labels_per_user']['min']}, max "
        f"{ml['labels_per_user']['max']}). Training took {ml['fit_s_per_user']['mean']:.2f} s per user on average "
        f"(p95 {ml['fit_s_per_user']['p95']:.2f} s), {ml['wall_s']:.0f} s in all on {ml['workers']} worker process(es).",
        "",
        f"Yardsticks, fixed in advance (`PROXIES` in `agent/lab/validation/traits/common.py`; liked = {ml['liked_threshold_stars']:.0f}"
        " stars or more). Conscientiousness has no sensible genre stand-in and is not tested.",
        "",
        "| trait | yardstick | why |",
        "|---|---|---|",
    ]
    for trait_id in ids:
        if trait_id in PROXIES:
            lines.append(f"| {names[trait_id]} | {_proxy_text(trait_id)} | {PROXIES[trait_id].why} |")
    lines += [
        "",
        "Correlations across users with bootstrap 95% intervals. \"Liked films' axis mean\" correlates the yardstick "
        "with the plain average axis position of the films the user liked (no model): the reading through the "
        "trained adapter should do about as well. \"Axis vs films\" is the correlation over the 1,682 films between "
        "their axis position and the yardstick's film-level quantity (genre high minus low, or minus log popularity): "
        "whether the pole texts point where the genres are. \"Alternative reading q·a\" is not what the product "
        "shows: it is how much the person's score of a film changes when the film moves along the axis with "
        "everything else held (q . a_t, q the effective preference), measured here to compare with the product's "
        "catalog covariance Cov_i(s_i, position_i), which also credits a trait with whatever co-varies with it "
        "across the catalog.",
        "",
        "| trait | Pearson r [95% CI] | Spearman rho [95% CI] | 2nd yardstick, Pearson | liked films' axis mean, "
        "Pearson | alternative reading q·a, Pearson | axis vs films | tracks it? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for trait_id in ids:
        e = ml["per_trait"][trait_id]
        if "proxy" not in e:
            continue
        lines.append(f"| {names[trait_id]} | {_ci(e['proxy'])} | {_ci(e['proxy'], 'spearman')} | "
                     f"{_ci(e['proxy_second'])} | {_ci(e['liked_axis_mean_vs_proxy'])} | "
                     f"{_ci(e['directional_vs_proxy'])} | {e['item_level']:+.2f} | "
                     f"{_verdict(e['proxy'])} |")
    sat = ml["saturation"]
    lines += [
        "",
        "\"Tracks it?\": yes = r >= 0.3 with the interval above 0; weakly = interval above 0, r < 0.3; no = interval "
        "includes 0; opposite = interval below 0.",
        "",
        "Distribution of the values over users (is anything saturated?):",
        "",
        "| trait | mean | sd | 5% | 25% | median | 75% | 95% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for trait_id in ids:
        d = ml["per_trait"][trait_id]["values"]
        lines.append(f"| {names[trait_id]} | {d['mean']:.2f} | {d['sd']:.2f} | {d['p5']:.2f} | {d['p25']:.2f} | "
                     f"{d['p50']:.2f} | {d['p75']:.2f} | {d['p95']:.2f} |")
    between = ml["between_traits"]
    lines += [
        "",
        f"{sat['beyond_0.2_0.8']:.0%} of all readings are below 0.2 or above 0.8 ({sat['beyond_0.1_0.9']:.0%} beyond "
        f"0.1/0.9); {sat['within_0.4_0.6']:.0%} are between 0.4 and 0.6; the median distance from 0.5 is "
        f"{sat['median_distance_from_half']:.2f}.",
        "",
        f"How the traits move together across users: mean |r| between two traits {between['mean_abs']:.2f}. The "
        f"same pairs' correlation of the axes themselves over the films has mean |r| {between['axes_mean_abs']:.2f}, and "
        f"the two patterns correlate at r = {between['users_vs_axes_r']:.2f} (the users' entanglement mirrors the "
        f"axes', amplified). Across users the {len(ids)} values amount to {between['effective_number']:.1f} independent "
        f"quantities (participation ratio of the correlation matrix; the first two components carry "
        f"{between['first_two_components']:.0%} of the variance). The alternative reading q·a would have mean |r| "
        f"{between['directional_mean_abs']:.2f} and {between['directional_effective_number']:.1f} independent "
        "quantities. Strongest pairs:",
        "",
        "| pair | r across users | r of the axes over films |",
        "|---|---|---|",
    ]
    for pair in between["strongest"]:
        lines.append(f"| {names[pair['a']]} – {names[pair['b']]} | {pair['r']:+.2f} | {pair['axes_r']:+.2f} |")
    lines += ["", "Full matrix across users (upper triangle):", "",
              "| | " + " | ".join(names[k][:6] for k in ids) + " |", "|---" * (len(ids) + 1) + "|"]
    for i, a in enumerate(ids):
        cells = [f"{between['matrix'][i][j]:+.2f}" if j > i else "" for j in range(len(ids))]
        lines.append(f"| {names[a]} | " + " | ".join(cells) + " |")
    if ml.get("retest"):
        rt = ml["retest"]
        per = ", ".join(f"{names[k]} {v:.2f}" for k, v in rt["per_trait"].items())
        lines += ["", f"Retest: {rt['users']} users trained again on the same ratings with another initialisation "
                  f"and negative sampling read the same to within {rt['mean_abs_difference']:.3f} on average; "
                  f"per-trait correlation between the two fits: {per}. This bounds how well any yardstick can be "
                  "tracked."]
    lines += ["", "Real attributes, for context only (no claim that a taste trait should follow age or gender; "
              "Pearson r, female = 1), and the number of films the user rated (a reading should not simply "
              "follow how much someone rates):", "", "| trait | age | female | number of ratings |", "|---|---|---|---|"]
    for trait_id in ids:
        e = ml["per_trait"][trait_id]
        lines.append(f"| {names[trait_id]} | {_ci(e['age'])} | {_ci(e['female'])} | {_ci(e['ratings'])} |")

    through = edits["through_agent"]
    methods = edits["methods"]
    lines += [
        "",
        "### (c) Setting one trait: how much do the others move?",
        "",
        f"For {edits['users']} of the MovieLens users, every trait set {edits['step']} up and down (kept within "
        f"{EDIT_BOUNDS[0]}..{EDIT_BOUNDS[1]}; {methods['product']['edits']} edits): with `TraitSpace.edit` "
        "(what `ownrec traits set` does: bounded, it stops short where reaching the target would move the feed too "
        "far), with `move_to` (the same edit unbounded)"
        + (", with its exact-dual variant (no tolerance: every other trait held exactly)" if "exact_dual" in methods
           else "")
        + ", and, for comparison, by a naive push of p along the trait's own axis, scaled (by bisection) to reach "
        "the same value. Target: the other traits move "
        "< 0.05 on average. \"Score change\" is the sd of the change of the person's scores across the catalog, "
        "over the sd of their scores (median over edits): how much of the ranking an edit rewrites.",
        "",
        "| method | others' mean change | p90 | worst | target missed by (mean) | score change |",
        "|---|---|---|---|---|---|",
    ]
    labels = {"product": "`edit` (the product's, bounded)", "unbounded": "`move_to` (unbounded)",
              "exact_dual": "exact dual basis",
              "naive": "naive push along the axis"}
    for name, m in methods.items():
        unreachable = f" ({m['unreachable']} targets out of reach)" if m.get("unreachable") else ""
        lines.append(f"| {labels[name]} | {m['mean_other_change']:.4f} | {m['p90_other_change']:.4f} | "
                     f"{m['max_other_change']:.4f} | {m['mean_target_miss']:.5f}{unreachable} | "
                     f"{m['score_change']:.2f} |")
    if through.get("traits"):
        lines.append(f"| through the agent (`Traits.set`, read back with `readings`, then `undo`), one simulated user "
                     f"of mixed taste, all {through['traits']} traits | {through['mean_other_change']:.4f} | | "
                     f"{through['max_other_change']:.4f} | {through['mean_target_miss']:.5f} | |")
        lines += ["", f"Undo restored every value to within {through['max_undo_error']:.1e}."]
    worst = ", ".join(f"{names[w['set']]} → {names[w['moves']]} {w['by']:.2f}" for w in edits["naive_worst_pairs"])
    lines += ["", f"Where the naive push drags most (set → moves, mean change): {worst}."]

    lines += [
        "",
        f"### (d) An edit's effect on the feed: dark +{feed['step']}",
        "",
        f"A simulated user likes two random films from each of {len(feed['mixed_genres'])} genres "
        f"({', '.join(feed['mixed_genres'])}); feed of {feed['feed_size']} with exploration off; then "
        f"`ownrec traits set dark` to the current value + {feed['step']} (at most {EDIT_BOUNDS[1]}). Dark films: "
        f"{'/'.join(feed['dark_genres'])}. "
        f"Mean over {feed['seeds']} simulated user(s).",
        "",
        "| | before | after |",
        "|---|---|---|",
    ]
    for key, label in (("top10_dark_percentile", "mean dark percentile, top 10"),
                       ("top20_dark_percentile", "mean dark percentile, top 20"),
                       ("top50_dark_percentile", "mean dark percentile, all 50"),
                       ("top10_dark_genre_share", "share of dark-genre films, top 10"),
                       ("top20_dark_genre_share", "share of dark-genre films, top 20")):
        lines.append(f"| {label} | {feed[key][0]:.2f} | {feed[key][1]:.2f} |")
    first = feed["per_seed"][0]
    lines += [
        "",
        f"Full ranking of the {first['unrated_items']} unrated films: the 100 darkest (by axis position) moved up by "
        f"a median of {feed['darkest100']['median_moved_up']:.0f} places ({feed['darkest100']['share_moved_up']:.0%} "
        f"of them moved up); the 100 lightest moved down by a median of {-feed['lightest100']['median_moved_up']:.0f} "
        f"({feed['lightest100']['share_moved_up']:.0%} moved up). {feed['top20_kept']:.0f} of the top 20 stayed; "
        f"score change {feed['score_change']:.2f} (as in (c)). "
        f"Dark read {first['dark_before']:.2f} → {first['dark_after']:.2f}; the other traits moved "
        f"{first['others_moved']:.5f} on average.",
        "",
        f"First user's top 8 before: {'; '.join(first['titles_before'])}.",
        "",
        f"After: {'; '.join(first['titles_after'])}.",
        "",
        "### What the numbers mean",
        "",
    ]
    lines += _meaning(results, names)
    return "\n".join(lines) + "\n"


def _meaning(results: dict[str, Any], names: dict[str, str]) -> list[str]:
    """Plain sentences drawn from the figures, so they stay true when the command runs again."""
    poles, ml, edits, feed = results["pole_users"], results["movielens"], results["edits"], results["feed"]
    out: list[str] = []
    failing = [names[k] for k, e in poles["per_trait"].items()
               if e["high_likes"]["min"] < PASS_HIGH or e["low_likes"]["max"] > PASS_LOW
               or e["high_likes_dislikes"]["min"] < PASS_HIGH or e["low_likes_dislikes"]["max"] > PASS_LOW]
    highs = [e[f"high_{v}"]["mean"] for e in poles["per_trait"].values() for v in ("likes", "likes_dislikes")]
    lows = [e[f"low_{v}"]["mean"] for e in poles["per_trait"].values() for v in ("likes", "likes_dislikes")]
    right_way = all(e[f"high_{v}"]["min"] > 0.5 > e[f"low_{v}"]["max"]
                    for e in poles["per_trait"].values() for v in ("likes", "likes_dislikes"))
    if failing:
        out.append(f"- (a) Pole users: {poles['passed']}/{poles['users']} meet the target of >= {PASS_HIGH} / <= "
                   f"{PASS_LOW}; misses on {', '.join(failing)}. High-pole users read {min(highs):.2f}–{max(highs):.2f} "
                   f"on average, low-pole users {min(lows):.2f}–{max(lows):.2f}: "
                   + ("**some pole users read on the wrong side of 0.5.**" if not right_way else
                      "every trait points the right way and the misses are near the threshold." if
                      poles["passed"] >= 0.75 * poles["users"] else
                      "every trait points the right way, but the scale is conservative: a user who likes only "
                      "films from one end of an axis is mostly not read as being at that end."))
    else:
        out.append(f"- (a) Every pole user reads as intended (>= {PASS_HIGH} / <= {PASS_LOW}) on every trait: the "
                   "reading follows a clear, one-sided taste.")
    gaps = sorted(poles["per_trait"].items(), key=lambda kv: -kv[1]["off_target_gap_mean"])
    out.append(f"  The readings are not specific: the two poles' users also read apart on the other traits (mean "
               f"gap {np.mean([e['off_target_gap_mean'] for _, e in gaps]):.2f}, against "
               f"{np.mean([e['own_gap'] for _, e in gaps]):.2f} on the trait itself; largest for "
               f"{names[gaps[0][0]]}, whose pole users differ by {gaps[0][1]['most_moved_other']['gap']:+.2f} on "
               f"{names[gaps[0][1]['most_moved_other']['trait']]}). Part of this is the overlap of the axes: the "
               "pole films of one axis lean towards a pole of the axes correlated with it.")
    groups: dict[str, list[str]] = {"yes": [], "weakly": [], "no": [], "opposite": []}
    for trait_id, e in ml["per_trait"].items():
        if "proxy" in e and e["proxy"]["pearson"] is not None:
            groups[_verdict(e["proxy"])].append(f"{names[trait_id]} (r = {e['proxy']['pearson']:+.2f})")
    if groups["yes"]:
        out.append(f"- (b) Across real users these track their yardstick clearly: {', '.join(groups['yes'])}.")
    if groups["weakly"]:
        out.append(f"- (b) Weakly but reliably (interval above 0, r < 0.3): {', '.join(groups['weakly'])}.")
    if groups["no"]:
        out.append(f"- (b) **No evidence they track their yardstick** (interval includes 0): {', '.join(groups['no'])}.")
    if groups["opposite"]:
        out.append(f"- (b) **Track their yardstick in the wrong direction**: {', '.join(groups['opposite'])}.")
    for trait_id, e in ml["per_trait"].items():
        if ("proxy" in e and e["proxy"]["pearson"] is not None and _verdict(e["proxy"]) in ("no", "opposite")
                and e["proxy_second"]["pearson"] is not None and e["proxy_second"]["pearson_ci"][0] > 0):
            text = (f"  {names[trait_id]} does follow its second yardstick ({_second_text(trait_id)}: "
                    f"r = {e['proxy_second']['pearson']:+.2f}): it measures something, but not what the first "
                    "yardstick says")
            activity = e.get("ratings", {}).get("pearson")
            if activity is not None and abs(activity) >= 0.3:
                text += (f"; its value also follows how many films the user rated (r = {activity:+.2f}), so part "
                         "of this may be activity rather than taste")
            out.append(text + ".")
    worse = [names[k] for k, e in ml["per_trait"].items() if "proxy" in e and e["proxy"]["pearson"] is not None
             and e["liked_axis_mean_vs_proxy"]["pearson"] is not None
             and e["liked_axis_mean_vs_proxy"]["pearson"] - e["proxy"]["pearson"] > 0.1]
    if worse:
        out.append(f"  For {', '.join(worse)} the plain average of the liked films' axis positions tracks the "
                   "yardstick better than the reading through the trained adapter by more than 0.1: the ratings "
                   "carry the signal and the axis finds it, and some of it is lost between the ratings and the "
                   "value (likely causes, not isolated here: the adapter learns to tell rated films from unrated "
                   "ones, not only liked from disliked; and the value credits whatever co-varies with the trait "
                   "across the catalog).")
    weak_axes = [names[k] for k, e in ml["per_trait"].items() if "item_level" in e and abs(e["item_level"]) < 0.2]
    if weak_axes:
        out.append(f"  For {', '.join(weak_axes)} even the axis barely separates the yardstick's films (|r| < 0.2 over "
                   "films): either the pole texts do not point where those genres are, or the genre yardstick is a "
                   "poor stand-in; user-level correlations cannot be better than that.")
    blind = [names[k] for k, e in ml["per_trait"].items() if "item_level" in e and abs(e["item_level"]) < 0.2
             and PROXIES[k].statistic == "popularity"]
    if blind:
        out.append(f"  For {', '.join(blind)} the yardstick is popularity, and a film's text here (title, year, "
                   "genres) says nothing about how popular it is: no axis built from text can find the mainstream "
                   "in this catalog. Item biases or residuals from the federation would carry it; the text does not.")
    sat = ml["saturation"]
    if sat["beyond_0.2_0.8"] > 0.5:
        out.append(f"- Saturation: {sat['beyond_0.2_0.8']:.0%} of real users' readings are beyond 0.2/0.8; values "
                   "mostly say the sign, not the degree.")
    else:
        out.append(f"- No saturation{', rather the opposite' if sat['within_0.4_0.6'] > 0.5 else ''}: only {sat['beyond_0.2_0.8']:.0%} of real users' readings are "
                   f"beyond 0.2/0.8, {sat['within_0.4_0.6']:.0%} are within 0.4–0.6 (median distance from 0.5: "
                   f"{sat['median_distance_from_half']:.2f}; sd across users "
                   f"{min(e['values']['sd'] for e in ml['per_trait'].values()):.2f}–"
                   f"{max(e['values']['sd'] for e in ml['per_trait'].values()):.2f} per trait). Real users with dozens "
                   f"of mixed ratings read towards the middle, while the one-sided users of (a) read "
                   f"{min(highs):.2f}–{max(highs):.2f}: the scale has room at both ends.")
    between = ml["between_traits"]
    top = between["strongest"][0]
    tested = [e for e in ml["per_trait"].values() if "proxy" in e and e["proxy"]["pearson"] is not None
              and e["directional_vs_proxy"]["pearson"] is not None]
    mean_prod = float(np.mean([e["proxy"]["pearson"] for e in tested])) if tested else 0.0
    mean_dir = float(np.mean([e["directional_vs_proxy"]["pearson"] for e in tested])) if tested else 0.0
    out.append(f"- The traits are not independent measurements: mean |r| between two traits across users is "
               f"{between['mean_abs']:.2f} (strongest {names[top['a']]} – {names[top['b']]} {top['r']:+.2f}), "
               f"more than the overlap of their axes over the films ({between['axes_mean_abs']:.2f}); the "
               f"{len(ml['per_trait'])} values amount to {between['effective_number']:.1f} independent quantities. The "
               f"alternative reading q·a (the bare direction of the person's taste along each axis) would have "
               f"mean |r| {between['directional_mean_abs']:.2f} and {between['directional_effective_number']:.1f} "
               "independent quantities: most of the entanglement comes from reading a trait as a correlation over "
               "the catalog, which credits a trait with everything that co-varies with it. ownrec keeps the "
               "correlation because it says what the ranker does: tried during development with the bare direction, "
               "setting the test suite's dark fan to dark 0.2 left the top 20's mean dark percentile at 0.81 "
               "(from 0.95), since the rest of the taste still prefers dark films: the number would have stopped "
               "describing the feed."
               + (f" Against the yardsticks it does {'about as well' if abs(mean_dir - mean_prod) < 0.05 else ('better' if mean_dir > mean_prod else 'worse')} "
                  f"(mean r {mean_dir:+.2f} against {mean_prod:+.2f})." if tested else ""))
    if ml.get("retest"):
        low = min(ml["retest"]["per_trait"].values())
        out.append(f"- Retraining on the same ratings with another seed reproduces the values (per-trait r >= "
                   f"{low:.2f}): differences between users are not training noise.")
    product, naive = edits["methods"]["product"], edits["methods"].get("naive")
    exact = edits["methods"].get("exact_dual")
    text = (f"- (c) Setting a trait the product's way moves the others {product['mean_other_change']:.3f} on average "
            f"(target < 0.05: {'met' if product['mean_other_change'] < 0.05 else 'MISSED'}; through the agent "
            f"{edits['through_agent']['mean_other_change']:.3f})")
    if naive:
        text += (f", against {naive['mean_other_change']:.3f} for a naive push along the trait's axis "
                 f"({naive['mean_other_change'] / max(product['mean_other_change'], 1e-9):.0f}x)")
    if exact:
        text += (f". The exact dual basis holds the others at {exact['mean_other_change']:.1e} but rewrites more of "
                 f"the ranking to do it (score change {exact['score_change']:.2f} against {product['score_change']:.2f})")
    if naive and product["score_change"] > 1.5 * naive["score_change"]:
        text += (f". The price: holding every other trait changes the person's scores more than the naive push "
                 f"does (score change {product['score_change']:.2f} against {naive['score_change']:.2f} sd of their "
                 "own scores), because traits that co-vary in the catalog must be pushed apart")
    out.append(text + ".")
    spreads = [e["values"]["sd"] for e in ml["per_trait"].values()]
    scale = (f"- Scale: real users' values have sd {min(spreads):.2f}–{max(spreads):.2f} per trait, so an edit of "
             f"{edits['step']} is {edits['step'] / max(spreads):.0f}–{edits['step'] / min(spreads):.0f} sd of the "
             f"differences between real people. It changed the person's scores by "
             f"{edits['methods']['product']['score_change']:.2f} sd of their own scores in (c), and kept "
             f"{feed['top20_kept']:.0f} of the top 20 films in (d)")
    if edits["step"] / max(spreads) >= 2:
        scale += ("; an edit that size asks for a taste far outside where real users are, and rewrites much of "
                  f"the feed. Real differences between people are about {float(np.median(spreads)):.2f} (median sd).")
    else:
        scale += "."
    out.append(scale)
    darker = feed["top20_dark_percentile"][1] - feed["top20_dark_percentile"][0]
    others_moved = float(np.mean([f["others_moved"] for f in feed["per_seed"]]))
    out.append(f"- (d) Raising dark by {feed['step']} makes the feed darker: the top 20's mean dark percentile goes "
               f"{feed['top20_dark_percentile'][0]:.2f} → {feed['top20_dark_percentile'][1]:.2f} ({darker:+.2f}), the "
               f"share of dark-genre films in the top 10 {feed['top10_dark_genre_share'][0]:.2f} → "
               f"{feed['top10_dark_genre_share'][1]:.2f}, and the 100 darkest unrated films move up a median "
               f"{feed['darkest100']['median_moved_up']:.0f} places while the 100 lightest move "
               f"{-feed['lightest100']['median_moved_up']:.0f} places down; the other traits moved "
               f"{others_moved:.3f} on average"
               + (f", above the 0.05 target: at {np.mean([f['dark_after'] for f in feed['per_seed']]):.2f} dark would "
                  "explain nearly all of the person's taste, and near the end of the scale the others give way."
                  if others_moved >= 0.05 else "."))
    out.append("- Caveats: genres are coarse, noisy stand-ins for the traits (a film is \"Thriller\" whether it is "
               "grim or not), \"liked\" ignores what a user never watched, and the Big Five traits are read from "
               "taste in films only: a correlation here says the reading follows the content a person likes, "
               "not that it measures their personality.")
    return out

