import json

import pytest

from habitat_eqarm.bench.evaluate import score_report
from habitat_eqarm.bench.pairwise import (
    VOTE,
    build_pairs,
    majority_outcome,
    score_pair_report,
    verdict_report,
)
from habitat_eqarm.bench.pairwise_report import table_invalid, table_pairwise
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import EQAInstance, write_jsonl
from habitat_eqarm.rewards.model import judgement_from_texts
from habitat_eqarm.rewards.pairwise import pair_judgement_from_texts
from habitat_eqarm.rewards.sample_cache import EvalSettings, SampleCache

OK = "<critique>x</critique><verdict>{}</verdict>"


def _instances(gts: dict[str, list[int]], category="object recognition"):
    return [
        EQAInstance(
            question_id=f"{q}#{n}",
            question="?",
            category=category,
            source="hm3d",
            gt_score=gt,
        )
        for q, scores in gts.items()
        for n, gt in enumerate(scores)
    ]


def test_pairs_are_same_question_with_different_gt():
    pairs = build_pairs(_instances({"q1": [9, 2, 9], "q2": [5], "q3": [4, 4]}))
    assert [p.question_id for p in pairs] == ["q1#0|q1#1", "q1#1|q1#2"]  # 9 vs 9 left out
    assert [p.better for p in pairs] == ["q1#0", "q1#2"]


@pytest.mark.parametrize(
    ("votes", "outcome"),
    [(["a", "b", "a"], "a"), (["a", "b"], "tie"), ([None, None], "invalid"), ([None, "b"], "b")],
)
def test_majority_outcome(votes, outcome):
    assert majority_outcome(votes) == outcome


def _judged(pairs, vote):
    """Pair judgements where ``vote(pair, order, i)`` gives sample i's text."""
    return {
        p.question_id: pair_judgement_from_texts(
            p,
            {o: [vote(p, o, i) for i in range(4)] for o in ("AB", "BA")},
            prompt_id="p",
            model="m",
        )
        for p in pairs
    }


SETTINGS = EvalSettings(ks=(1, 2, 4), aggregates=(VOTE,), bootstrap=200)


def test_a_model_that_always_says_a_has_full_position_bias_and_no_consistency():
    pairs = build_pairs(_instances({f"q{i}": [9, 2] for i in range(10)}))
    report = verdict_report(pairs, _judged(pairs, lambda p, o, i: OK.format("A")), SETTINGS)
    r = report["4"][VOTE]
    assert r["orders"]["AB"]["accuracy"] == 1.0 and r["orders"]["BA"]["accuracy"] == 0.0
    assert r["accuracy"] == 0.5 and r["position_bias"] == 1.0
    assert r["consistent"]["pairs"] == 0 and r["consistent"]["accuracy"] is None
    assert r["both_orders"]["ties"] == 10 and r["both_orders"]["accuracy"] == 0.0
    assert r["ci"]["accuracy"] == {"lo": 0.5, "hi": 0.5}
    table = table_pairwise(report, VOTE, "m")
    assert "| 4 | 100.00 [100.00, 100.00] | 0.00 [0.00, 0.00] | 50.00 [50.00, 50.00] |" in table


def test_a_right_model_is_consistent_and_k_curves_use_prefixes():
    pairs = build_pairs(_instances({f"q{i}": [9, 2] for i in range(6)}))

    def vote(pair, order, i):  # right, except its first sample in (B, A) is malformed
        if order == "BA" and i == 0:
            return "<critique>x</critique><verdict>both</verdict>"
        return OK.format("A" if order == "AB" else "B")

    report = verdict_report(pairs, _judged(pairs, vote), SETTINGS)
    one, four = report["1"][VOTE], report["4"][VOTE]
    assert one["orders"]["BA"]["invalid"] == 6 and one["orders"]["BA"]["accuracy"] == 0.0
    assert one["invalid_samples"]["BA"] == {"verdict names both responses": 6}
    assert four["invalid_samples"]["BA"] == {"verdict names both responses": 6}
    assert four["samples"] == 6 * 2 * 4
    assert four["accuracy"] == four["consistent"]["accuracy"] == 1.0
    assert four["position_bias"] == 0.5 and four["consistent"]["rate"] == 1.0
    assert four["by_category"]["object recognition"]["accuracy"] == 1.0
    assert "verdict names both responses" in table_invalid(report, VOTE)
    assert "| 1 | 12 | 0/6 |" in table_invalid(report, VOTE)


def test_pairwise_from_pointwise_matches_the_pointwise_report():
    """Semi-scalar: comparing scores gives the evaluator's pairwise accuracy, ties counted."""
    instances = _instances({f"q{i}": [9, 2, 5] for i in range(8)})
    texts = [f"<critique>x</critique><score>{s}</score>" for s in (7, 3, 7, 1)]
    judgements = {}
    for n, inst in enumerate(instances):
        rotated = texts[n % 4 :] + texts[: n % 4] if n % 3 else ["junk"] * 4
        judgements[inst.question_id] = judgement_from_texts(
            inst, rotated, aggregate="mean", prompt_id="p", model="m"
        )
    settings = EvalSettings(ks=(1, 2, 4), aggregates=("majority", "mean"), bootstrap=100)
    pairs = build_pairs(instances)
    ours = score_pair_report(pairs, judgements, settings)
    theirs = score_report(instances, judgements, settings)
    for k in ("1", "2", "4"):
        for agg in settings.aggregates:
            r, pointwise = ours[k][agg], theirs[k][agg]["pairwise"]
            assert r["pairs"] == pointwise["pairs"] == 24
            assert r["orders"]["AB"]["accuracy"] == pytest.approx(pointwise["accuracy"])
            assert r["orders"]["AB"]["ties"] == r["orders"]["BA"]["ties"] == pointwise["ties"]
            assert r["position_bias"] in (0.5, None)  # scores cannot prefer a position
            assert r["orders"]["AB"]["invalid"] > 0  # every third response never parsed


def _bench(tmp_path, synthetic_folder):
    """Two responses to each synthetic question: right (GT 9) and wrong (GT 2)."""
    _, questions = synthetic_folder
    out = []
    for q in questions[:2]:
        for n, (answer, gt) in enumerate([(q.gt_answer, 9), ("a purple piano", 2)]):
            out.append(
                EQAInstance(
                    question_id=f"{q.question_id}#{n}",
                    question=q.question,
                    category=q.category,
                    source=q.source,
                    episode_path=q.episode_path,
                    predicted_answer=answer,
                    reasoning_steps=["I look around."],
                    gt_score=gt,
                )
            )
    return write_jsonl(tmp_path / "bench.jsonl", out)


def run_eval(model, data, out, protocol, *extra):
    args = ["eval", "--model", str(model), "--data", str(data), "--out", str(out)]
    args += ["--k", "1,2", "--max_new_tokens", "6", "--batch_size", "2", "--protocol", protocol]
    return main([*args, *extra])


def test_eval_pairwise_writes_reports_and_resumes(
    tiny_model_path, synthetic_folder, tmp_path, monkeypatch
):
    data = _bench(tmp_path, synthetic_folder)
    out = tmp_path / "pairwise"
    assert run_eval(tiny_model_path, data, out, "pairwise") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "pairwise" and results["n_pairs"] == results["n_judged"] == 2
    r = results["by_k"]["2"][VOTE]
    assert r["pairs"] == 2 and r["samples"] == 2 * 2 * 2
    invalid = sum(sum(c.values()) for c in r["invalid_samples"].values())
    assert set(r["orders"]) == {"AB", "BA"} and 0 <= invalid <= 8
    for metrics in (r, r["orders"]["AB"], r["both_orders"]):
        ci, value = metrics["ci"]["accuracy"], metrics["accuracy"]
        assert ci["lo"] is None or ci["lo"] <= value <= ci["hi"]
    assert "| K | (A, B) | (B, A) |" in (out / "pairwise.md").read_text()
    assert "K=1 | K=2" in (out / "table2.md").read_text()
    assert (out / "pairwise_scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "pairs.jsonl").read_text().splitlines()) == 2

    from habitat_eqarm.rewards.model import EQARewardModel

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although every verdict is cached")

    monkeypatch.setattr(EQARewardModel, "from_pretrained", no_loading)
    assert run_eval(tiny_model_path, data, out, "pairwise", "--bootstrap", "10") == 0
    assert json.loads((out / "results.json").read_text())["by_k"]["1"][VOTE]["pairs"] == 2

    # the cached verdicts rewritten as a model that always names A: the reports follow them
    lines = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    for line in lines:
        for sample in (s for o in ("AB", "BA") for s in line["judgement"]["samples"][o]):
            sample.update(text=OK.format("A"), critique="x", winner="A", format_ok=True)
            sample["reason"] = None
    (out / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert run_eval(tiny_model_path, data, out, "pairwise") == 0
    r = json.loads((out / "results.json").read_text())["by_k"]["2"][VOTE]
    assert r["orders"]["AB"]["accuracy"] == 1.0 and r["orders"]["BA"]["accuracy"] == 0.0
    assert r["position_bias"] == 1.0 and r["consistent"]["pairs"] == 0
    assert r["invalid_samples"] == {"AB": {}, "BA": {}}
    table = (out / "pairwise.md").read_text()
    assert "| 2 | 100.00 [100.00, 100.00] | 0.00 [0.00, 0.00] |" in table


def test_eval_semi_scalar_adds_pairs_to_the_pointwise_reports(
    tiny_model_path, synthetic_folder, tmp_path
):
    data = _bench(tmp_path, synthetic_folder)
    out = tmp_path / "semi"
    assert run_eval(tiny_model_path, data, out, "semi-scalar") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "semi-scalar" and "by_k" in results
    pairs, pointwise = results["pairs"]["2"]["majority"], results["by_k"]["2"]["majority"]
    assert pairs["orders"]["AB"]["accuracy"] == pointwise["pairwise"]["accuracy"]
    assert (out / "table1.md").is_file() and (out / "pairwise.md").is_file()
    cache = SampleCache(out / "samples.jsonl", {}).load(accept_any=True)
    assert len(cache.entries) == 4


def test_unknown_protocol_and_data_without_pairs_are_refused(tmp_path, capsys):
    data = write_jsonl(tmp_path / "x.jsonl", _instances({"q": [3, 3]}))
    assert run_eval("not-loaded", data, tmp_path / "o", "listwise") == 1
    err = capsys.readouterr().err
    assert "--protocol must be one of" in err and "'listwise'" in err
    for protocol in ("pairwise", "semi-scalar"):  # refused before a model is loaded
        assert run_eval("not-loaded", data, tmp_path / "o", protocol) == 1
        assert "no two responses to one question with different gt_score" in capsys.readouterr().err
