import json

import pytest

from habitat_eqarm.bench.evaluate import format_report, score_report
from habitat_eqarm.bench.report import table_by_source
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import EQAInstance, to_dataset, write_jsonl
from habitat_eqarm.data.loading import load_instances
from habitat_eqarm.rewards.model import judgement_from_texts
from habitat_eqarm.rewards.sample_cache import EvalSettings, SampleCache


def run_eval(model, data, out, *extra):
    args = ["eval", "--model", str(model), "--data", str(data), "--out", str(out)]
    args += ["--k", "1,2,4", "--max_new_tokens", "6", "--batch_size", "2", *extra]
    return main(args)


def test_eval_writes_every_report_and_resumes_without_resampling(
    tiny_model_path, labelled, tmp_path, monkeypatch
):
    data, instances = labelled
    out = tmp_path / "eval"
    assert run_eval(tiny_model_path, data, out, "--limit", "2") == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 2
    (out / "samples.jsonl").write_text("\n".join(lines) + '\n{"fingerprint": {"mod')  # torn
    assert run_eval(tiny_model_path, data, out) == 0
    cached = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()[:2]]
    assert [c["judgement"]["question_id"] for c in cached] == [i.question_id for i in instances[:2]]
    cache = SampleCache(out / "samples.jsonl", cached[0]["fingerprint"]).load()
    assert set(cache.entries) == {i.question_id for i in instances}  # 2 kept + 4 new, not 8
    assert all(len(j.samples) == 4 for j in cache.entries.values())

    results = json.loads((out / "results.json").read_text())
    assert results["n_instances"] == results["n_scored"] == 6 and results["failures"] == []
    assert set(results["by_k"]) == {"1", "2", "4"}
    overall = results["by_k"]["4"]["majority"]["overall"]
    assert overall["n"] == 6 and 0 <= overall["n_invalid"] <= 6
    assert "hm3d" in results["by_k"]["1"]["mean"]["by_source"]
    assert results["by_k"]["1"]["majority"]["pairwise"]["pairs"] == 3
    assert "prefixes of the same samples" in (out / "table1.md").read_text()
    formats = results["format_by_k"]["4"]
    assert formats["samples"] == 24 and formats["instances"] == 6
    malformed = sum(not s.format_ok for j in cache.entries.values() for s in j.samples)
    assert formats["malformed_samples"] == malformed
    assert formats["sample_failure_rate"] == pytest.approx(malformed / 24)
    assert formats["instances_without_valid"] == overall["n_invalid"]
    assert "| malformed samples | no valid sample |" in (out / "table1.md").read_text()
    assert "object localization" in (out / "table2.md").read_text()
    for png in ("scaling.png", "histogram.png", "reliability.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    for metrics in (overall, results["by_k"]["4"]["majority"]["by_source"]["hm3d"]):
        for name in ("accuracy", "rmse"):
            ci, value = metrics["ci"][name], metrics[name]
            assert value is None or ci["lo"] <= value <= ci["hi"]
        assert metrics["ci"]["resamples"] == 1000 and metrics["ci"]["level"] == 0.95
    assert set(results["by_k"]["4"]["majority"]["pairwise"]["ci"]["accuracy"]) == {"lo", "hi"}
    calibration = results["by_k"]["4"]["majority"]["calibration"]
    assert calibration["overall"]["n"] == 6 - overall["n_invalid"]
    assert calibration["overall"]["correct_at"] == 5.0 and len(calibration["overall"]["bins"]) == 10
    assert "hm3d" in calibration["by_source"]
    assert "| pairwise | ECE |" in (out / "table1.md").read_text()

    # everything cached: a third run rebuilds the reports without loading a model at all
    from habitat_eqarm.rewards.model import EQARewardModel

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although every sample is cached")

    monkeypatch.setattr(EQARewardModel, "from_pretrained", no_loading)
    (out / "results.json").unlink()
    assert run_eval(tiny_model_path, data, out) == 0
    assert json.loads((out / "results.json").read_text())["n_scored"] == 6


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_a_bad_instance_is_reported_and_skipped(
    tiny_model_path, labelled, tmp_path, capsys, batch_size
):
    _, instances = labelled
    instances[1].episode_path = str(tmp_path / "gone.mp4")
    data = write_jsonl(tmp_path / "broken.jsonl", instances)
    out = tmp_path / "out"
    assert run_eval(tiny_model_path, data, out, "--k", "1", "--batch_size", batch_size) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_scored"] == 5
    assert results["failures"][0]["question_id"] == instances[1].question_id
    assert "gone.mp4" in results["failures"][0]["error"]
    assert "1 instance(s) failed and were skipped" in capsys.readouterr().out


def test_unlabelled_or_duplicate_instances_are_refused_before_sampling(labelled, tmp_path, capsys):
    _, instances = labelled
    instances[0].gt_score = None
    data = write_jsonl(tmp_path / "x.jsonl", instances)
    assert run_eval("not-loaded", data, tmp_path / "o") == 1
    assert "lack gt_score" in capsys.readouterr().err
    data = write_jsonl(tmp_path / "y.jsonl", [instances[1], instances[1]])
    assert run_eval("not-loaded", data, tmp_path / "o") == 1
    assert "duplicate question_id" in capsys.readouterr().err


def test_load_instances_from_dataset_folder_parquet_and_relative_paths(tmp_path):
    inst = EQAInstance(question_id="a", question="?", episode_path="episodes/e1", gt_score=3)
    ds = to_dataset([inst])
    ds.save_to_disk(tmp_path / "ds")
    ds.to_parquet(tmp_path / "x.parquet")
    from datasets import DatasetDict

    DatasetDict({"train": ds, "test": ds}).save_to_disk(tmp_path / "dd")
    (loaded,) = load_instances(tmp_path / "ds")
    assert loaded.episode_path == str(tmp_path / "ds" / "episodes" / "e1")
    (loaded,) = load_instances(tmp_path / "x.parquet", data_root="/data")
    assert loaded.episode_path == "/data/episodes/e1"
    assert len(load_instances(tmp_path / "dd", split="train")) == 1
    with pytest.raises(ValueError, match="no split 'val'"):
        load_instances(tmp_path / "dd", split="val")
    with pytest.raises(ValueError, match=r"expected a \.jsonl or \.parquet"):
        load_instances(tmp_path / "x.csv")


def test_cache_ignores_other_fingerprints(tmp_path):
    j = judgement_from_texts(
        EQAInstance(question_id="q", question="?"),
        ["x"],
        aggregate="mean",
        prompt_id="p",
        model="m",
    )
    SampleCache(tmp_path / "c.jsonl", {"kmax": 4}).add(j)
    assert SampleCache(tmp_path / "c.jsonl", {"kmax": 8}).load().entries == {}
    assert set(SampleCache(tmp_path / "c.jsonl", {"kmax": 4}).load().entries) == {"q"}


def test_format_failures_are_reported_per_sample_and_per_instance():
    """The paper's failure rate is per sample; "none valid" counts instances. Both reported."""
    ok, bad = "<critique>Fine.</critique><score>7</score>", "no tags at all"
    texts = {"a": [ok, bad, bad, ok], "b": [bad, bad, bad, bad], "c": [ok, ok, ok, bad]}
    instances = [EQAInstance(question_id=q, question="?", source="hm3d", gt_score=7) for q in texts]
    judgements = {
        q: judgement_from_texts(inst, texts[q], aggregate="mean", prompt_id="p", model="m")
        for q, inst in zip(texts, instances, strict=True)
    }
    settings = EvalSettings(ks=(1, 2, 4), aggregates=("mean",))
    formats = format_report(instances, judgements, settings.ks)
    assert formats["1"] == {
        "samples": 3,
        "malformed_samples": 1,
        "sample_failure_rate": pytest.approx(1 / 3),
        "instances": 3,
        "instances_without_valid": 1,
    }
    assert formats["4"]["samples"] == 12 and formats["4"]["malformed_samples"] == 7
    assert formats["4"]["instances_without_valid"] == 1  # "b" only
    table = table_by_source(score_report(instances, judgements, settings), "mean", "m", formats)
    assert "| malformed samples | no valid sample |" in table
    assert "| 58.33 (7/12) | 1/3 |" in table and "| 50.00 (3/6) | 1/3 |" in table


def _scored(scores: dict[str, tuple[int, int]], source="hm3d"):
    """Instances with the given (gt, predicted) scores, one valid sample each."""
    instances, judgements = [], {}
    for q, (gt, pred) in scores.items():
        inst = EQAInstance(question_id=q, question="?", source=source, gt_score=gt)
        text = f"<critique>Fine.</critique><score>{pred}</score>"
        judgements[q] = judgement_from_texts(
            inst, [text], aggregate="mean", prompt_id="p", model="m"
        )
        instances.append(inst)
    return instances, judgements


def test_table1_shows_intervals_and_results_are_deterministic():
    scores = {f"q{i}#{n}": (gt, gt + 2 * (i % 4)) for i in range(40) for n, gt in enumerate((2, 4))}
    instances, judgements = _scored(scores)
    settings = EvalSettings(ks=(1,), aggregates=("mean",), seed=7)
    report = score_report(instances, judgements, settings)
    assert report == score_report(instances, judgements, settings)
    r = report["1"]["mean"]
    acc, ci = r["overall"]["accuracy"], r["overall"]["ci"]["accuracy"]
    assert acc == 0.5 and ci["lo"] < acc < ci["hi"]  # offsets 0, 2, 4, 6: half within tau
    cell = f"{100 * acc:.2f} [{100 * ci['lo']:.2f}, {100 * ci['hi']:.2f}]"
    table = table_by_source(report, "mean", "m")
    assert f"| {cell} | - | {cell} |" in table  # HM3D, no ScanNet, overall
    ece = r["calibration"]["overall"]["ece"]
    assert f"| {ece:.3f} |" in table
    pair = r["pairwise"]
    assert pair["pairs"] == 40 and pair["accuracy"] == 1.0  # same offset: order kept
    assert pair["ci"]["accuracy"] == {"lo": 1.0, "hi": 1.0}
    off = score_report(
        instances, judgements, EvalSettings(ks=(1,), aggregates=("mean",), bootstrap=0)
    )
    assert off["1"]["mean"]["overall"]["ci"]["accuracy"] == {"lo": None, "hi": None}
    assert f"| {100 * acc:.2f} | - |" in table_by_source(off, "mean", "m")  # no brackets


def test_eval_refuses_bad_reporting_options(labelled, tmp_path, capsys):
    data, _ = labelled
    assert run_eval("not-loaded", data, tmp_path / "o", "--ci_level", "1.5") == 1
    assert "--ci_level" in capsys.readouterr().err
