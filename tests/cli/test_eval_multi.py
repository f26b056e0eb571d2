"""`eqarm eval --protocol multi`: every K report, invalid reasons, and the pointwise comparison."""

import json

import pytest

from habitat_eqarm.cli.main import main
from habitat_eqarm.data import EQAInstance, write_jsonl
from habitat_eqarm.data.schema import response_id
from habitat_eqarm.data.synthetic import make_synthetic_episode


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """3 questions of a synthetic episode, 4 responses each; answer "value v" has GT score v."""
    folder = tmp_path_factory.mktemp("multi-eval")
    _, questions = make_synthetic_episode(folder / "episode", seed=0)
    out = []
    for q, values in zip(questions, [(9, 2, 5, 7), (1, 8, 3, 3), (6, 0, 10, 4)], strict=False):
        for n, v in enumerate(values):
            out.append(
                EQAInstance(
                    question_id=response_id(q.question_id, n),
                    question=q.question,
                    category=q.category,
                    episode_id=q.episode_id,
                    episode_path=q.episode_path,
                    predicted_answer=f"value {v}",
                    reasoning_steps=["I look around."],
                    gt_score=v,
                )
            )
    return write_jsonl(folder / "bench.jsonl", out), out


def run_eval(model, data, out, *extra):
    args = ["eval", "--model", str(model), "--data", str(data), "--out", str(out)]
    args += ["--k", "1,2,4", "--num_keyframes", "2", "--bootstrap", "50", *extra]
    return main(args)


def test_multi_reports_every_k_and_agrees_with_pointwise(bench, tmp_path, answer_value_judge):
    data, _ = bench
    judge = ["--backend", "answer-value-judge"]
    assert run_eval("judge", data, tmp_path / "point", *judge) == 0
    assert run_eval("judge", data, tmp_path / "multi", *judge, "--protocol", "multi") == 0
    pointwise_calls, multi_calls = (len(b.prompts) for b in answer_value_judge.made)
    assert pointwise_calls == 12 and multi_calls == 3 * 4  # 3 groups x 4 shuffled votes
    results = json.loads((tmp_path / "multi" / "results.json").read_text())
    assert set(results["by_k"]) == {"1", "2", "4"} and results["protocol"] == "multi"
    assert results["by_k"]["4"]["majority"]["overall"]["accuracy"] == 1.0
    assert results["by_k"]["1"]["majority"]["pairwise"]["accuracy"] == 1.0
    assert results["invalid_reasons"] == {} and results["n_scored"] == 12
    bias = results["position_bias"]  # 4 votes x 12 responses spread over positions 1..4
    assert set(bias) == {"1", "2", "3", "4"} and sum(p["samples"] for p in bias.values()) == 48
    for png in ("scaling.png", "histogram.png", "reliability.png"):  # the K curves, as pointwise
        assert (tmp_path / "multi" / png).read_bytes()[:4] == b"\x89PNG"
    fingerprint = json.loads((tmp_path / "multi" / "samples.jsonl").read_text().splitlines()[0])
    assert fingerprint["fingerprint"]["prompt_id"] == "eqarm-rm-multi-v1"

    # compare: the cached multi samples are reused, only agreement.md is new
    compare = ["--protocol", "multi", "--compare_with", str(tmp_path / "point")]
    assert run_eval("judge", data, tmp_path / "multi", *judge, *compare) == 0
    assert len(answer_value_judge.made) == 2  # no model loaded: every sample was cached
    agreement = json.loads((tmp_path / "multi" / "agreement.json").read_text())
    assert agreement["n"] == 12 and set(agreement["by_k"]) == {"1", "2", "4"}
    row = agreement["by_k"]["4"]
    assert row["agreement"] == row["accuracy"] == row["accuracy_other"] == row["order_kept"] == 1.0
    assert row["ordered_pairs"] == 17  # 6 + 5 + 6 pairs with different scores
    # 1 s per request: multi made 12 requests (4 votes x 3 groups), pointwise 12 (1 per response);
    # reading the frames adds well under 0.1 s per run
    assert agreement["seconds"] == pytest.approx(12.0, abs=0.1)
    assert agreement["time_ratio"] == pytest.approx(1.0, abs=0.01)
    table = (tmp_path / "multi" / "agreement.md").read_text()
    assert "| 4 | 100.0% |" in table and "Model time: multi 12.0" in table


def test_multi_counts_bad_votes_with_their_reason(tiny_model_path, bench, tmp_path):
    data, _ = bench
    out = tmp_path / "tiny"
    extra = ["--protocol", "multi", "--max_new_tokens", "6", "--k", "1,2", "--limit", "4"]
    assert run_eval(tiny_model_path, data, out, *extra) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["failures"] == [] and results["n_scored"] == 4
    assert sum(results["invalid_reasons"].values()) == results["format_by_k"]["2"]["samples"] == 8
    assert results["by_k"]["2"]["mean"]["overall"]["n_invalid"] == 4


def test_bad_protocol_options(bench, tmp_path, capsys):
    data, _ = bench
    assert run_eval("judge", data, tmp_path / "x", "--protocol", "listwise") == 1
    assert "got 'listwise'" in capsys.readouterr().err
    assert run_eval("judge", data, tmp_path / "x", "--compare_with", str(tmp_path)) == 1
    assert "compares a multi-response run" in capsys.readouterr().err
    assert run_eval("judge", data, tmp_path / "x", "--protocol", "multi", "--engine", "ray") == 1
    assert "multi runs with --engine local" in capsys.readouterr().err
    missing = ["--protocol", "multi", "--compare_with", str(tmp_path / "none")]
    assert run_eval("judge", data, tmp_path / "x", *missing) == 1
    assert "no samples.jsonl" in capsys.readouterr().err
