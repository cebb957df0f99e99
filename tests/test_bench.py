"""`ownrec bench` runs end to end and reports every figure it promises (values, not timings:
speed targets are judged in BENCHMARKS.md, not in tests)."""

import json

from click.testing import CliRunner

from agent.cli import cli


def test_bench_quick_writes_markdown_and_json(prepared_models_dir, tmp_path):
    output = tmp_path / "BENCH.md"
    kept = "<!-- sync:begin -->\n## Federated sync\nfigures of `ownrec bench sync`\n<!-- sync:end -->"
    output.write_text(f"# Benchmarks\nold figures\n\n{kept}\n")
    result = CliRunner().invoke(cli, ["bench", "--quick", "--json", "--output", str(output)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    encoder = figures["encoder"]
    assert encoder["texts"] == 1682 and encoder["ownrec_texts_per_s"] > 0
    assert encoder["mean_cosine"] >= 0.99 and encoder["speedup"] > 0
    assert figures["ranking_100k"]["items"] == 100_000 and figures["ranking_100k"]["p50_ms"] > 0
    assert figures["ranking_demo"]["items"] == 1682
    assert figures["feedback"]["n"] > 0 and figures["feedback"]["p50_ms"] > 0
    assert figures["first_feed"]["median_s"] > 0, figures["first_feed"]
    llm = figures["llm"]
    assert llm["ownrec"]["tokens_per_second"] > 0 and llm["bare"]["tokens_per_second"] > 0, llm
    rerank = figures["rerank"]
    assert rerank["candidates"] == 20 and rerank["warm_prefix_reused"] is True, rerank
    assert rerank["warm"]["median_s"] > 0 and rerank["uncached"]["median_s"] > 0
    lora = figures["lora"]
    assert lora["rank"] == 8 and lora["step_seconds_median"] > 0 and lora["peak_rss_mb"] > 100, lora
    report = output.read_text()
    assert "rank 100,000 synthetic items" in report and "launch to first feed" in report
    assert "chat generation" in report and "LLM rerank of 20 candidates" in report
    assert "personal LoRA training step" in report
    assert "old figures" not in report and report.count(kept) == 1  # the sync section is kept
