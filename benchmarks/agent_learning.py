"""Agent GRPO learns on the agent toy: EQA-RM reward and GT accuracy vs an lr-0 control.

The toy (``habitat_eqarm.testing.agent_toy``): the tiny Qwen2-VL taught the answer format
answers each synthetic question with its right answer or "purple" about equally often; EQA-RM
is the tiny model after the toy RFT run (``testing.learning.rft_config``), which learnt to score
the right answers about 9 and "purple" about 2 without seeing the GT answer. Agent GRPO with
EQA-RM's score as the only reward (``gt_weight`` 0) should then move the agent to the right
answers. Per seed (the GRPO run's seed: data order, the agent's and EQA-RM's sampling; the RM
and the start agent are shared), a GRPO run and an lr-0 control that sees the same questions in
the same order; the effect is the mean over the second half of the steps, GRPO minus control,
of the EQA-RM reward and of the GT accuracy. The per-step figures are of one question's G
answers, so the data order's easy and hard questions make them noisy; so each final policy (the
GRPO run's and the control's) also answers every question (revise mode: revises every first
answer) ``--eval_samples`` times with the same random numbers, and the effect on those final
answers' GT accuracy and EQA-RM reward is reported too (``final_*``). Writes the curves to
``--png``; prints Markdown tables, then one JSON object as the last line.

``--mode revise`` (critique-guided GRPO, ``AgentGRPOConfig(mode="revise")``): the agent is also
taught to revise in format, ignoring the critique (``teach_agent_format(revision=True)``);
each prompt is the revision turn after one of the start agent's first answers and EQA-RM's
critique and score of it; the reward is EQA-RM's score of the revised answer. The measures are
then the revised-minus-first EQA-RM reward (``revise/improvement``, R2 - R1) and GT accuracy
(``revise/gt_gain``), revise-GRPO vs the lr-0 control.

Usage: python benchmarks/agent_learning.py [--seeds 0,1,2] [--steps 120] [--png docs/...png]
  [--mode answer|revise] [--lr 1e-3] [--eval_samples 16] [--rm outputs/toy-rft]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

RM_REWARD = "rewards/rm_reward/mean"
GT_ACCURACY = "agent/gt_accuracy"
IMPROVEMENT = "revise/improvement"
GT_GAIN = "revise/gt_gain"
#: per mode: (EQA-RM measure, its title), (GT measure, its title)
MEASURES = {
    "answer": ((RM_REWARD, "EQA-RM reward (score / 10)"), (GT_ACCURACY, "GT accuracy")),
    "revise": (
        (IMPROVEMENT, "EQA-RM reward, revised minus first"),
        (GT_GAIN, "GT accuracy, revised minus first"),
    ),
}


def late(history: list[dict], key: str) -> float:
    """Mean of ``key`` over the second half of the logged steps."""
    values = [e[key] for e in history if "step" in e and key in e]
    values = values[len(values) // 2 :]
    return sum(values) / len(values)


def curve(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e[key]) for e in history if "step" in e and key in e]
    return [p[0] for p in points], [p[1] for p in points]


def final_eval(cfg, agent: Path, samples: int) -> dict[str, float]:
    """The trained policy at ``agent``, ``samples`` answers at the GRPO temperature to each
    prompt: every question of ``cfg.data`` (answer mode), or every revision row of the run
    (revise mode: a first answer and EQA-RM's critique of it). The seed is the run's, so the
    GRPO agent and the control answer with the same random numbers. Returns the answers' GT
    accuracy and EQA-RM reward (unparsable: 0) and, in revise mode, the first answers' own."""
    import copy

    from habitat_eqarm.data.schema import read_jsonl
    from habitat_eqarm.rewards.parsing import parse_response
    from habitat_eqarm.rewards.textmatch import answers_match
    from habitat_eqarm.testing.agent_toy import WRONG
    from habitat_eqarm.training.agent_grpo import (
        REVISION_ROWS,
        AgentGRPOStats,
        agent_rows,
        answered,
        first_answer_texts,
        make_rm_reward,
    )

    ecfg = copy.copy(cfg)  # TrainingArguments do not survive dataclasses.replace
    ecfg.model_name_or_path, ecfg.first_answers = str(agent), samples
    if cfg.mode == "revise":  # the run's own revision rows (after their fingerprint line)
        lines = (Path(cfg.output_dir) / REVISION_ROWS).read_text().splitlines()[1:]
        rows = [r for r in map(json.loads, lines) if r]
    else:
        rows = agent_rows(read_jsonl(cfg.data), cfg.num_keyframes, AgentGRPOStats())
    reward = make_rm_reward(ecfg)
    try:
        texts = first_answer_texts(ecfg, rows, reward.reward_model)
        gt, scored, wrong = [], [], 0
        for row, outs in zip(rows, texts, strict=True):
            for text in outs:
                parsed = parse_response(text)
                gt.append(float(answers_match(parsed.answer, [row["gt_answer"]])))
                wrong += answers_match(parsed.answer, [WRONG])
                if parsed.answer:
                    scored.append(answered(row["instance"], parsed))
        judged = reward.score(-2, scored)
    finally:
        reward.reward_model.close()
    result = {
        "gt_accuracy": sum(gt) / len(gt),
        "rm_reward": sum((j.score or 0.0) / 10 for j in judged) / len(gt),
        "answers": len(gt),
        # the rest of the answers: right (gt_accuracy), "purple", another answer, unparsable
        "purple_share": wrong / len(gt),
        "unparsable_share": 1 - len(scored) / len(gt),
    }
    if cfg.mode == "revise":
        result["first_gt_accuracy"] = statistics.mean(r["first_gt_match"] for r in rows)
        result["first_rm_reward"] = statistics.mean(r["first_reward"] for r in rows)
    return result


def rm_by_answer_kind(rm: Path, questions: Path) -> dict[str, float]:
    """EQA-RM's mean score (K = 4, T = 0.8, seeded) of the right answer, of "purple" and of two
    other questions' answers, on every question: what the toy RM can tell apart."""
    import random

    from habitat_eqarm.data.schema import read_jsonl
    from habitat_eqarm.rewards.model import EQARewardModel
    from habitat_eqarm.testing.agent_toy import SMALL, WRONG
    from habitat_eqarm.testing.toy import toy_response

    qs = read_jsonl(questions)
    answers = sorted({q.gt_answer for q in qs})
    rng = random.Random(0)
    instances, kinds = [], []
    for q in qs:
        others = rng.sample([a for a in answers if a != q.gt_answer], 2)
        for kind, answer in [("right", q.gt_answer), (WRONG, WRONG)] + [
            ("other", a) for a in others
        ]:
            instances.append(toy_response(q, len(instances), answer, 0))
            kinds.append(kind)
    with EQARewardModel.from_pretrained(str(rm), batch_size=16, **SMALL) as model:
        judged = model.score(instances, k=4, temperature=0.8, seed=0, max_new_tokens=48)
    scores: dict[str, list[float]] = {}
    for kind, judgement in zip(kinds, judged, strict=True):
        if judgement.score is not None:
            scores.setdefault(kind, []).append(judgement.score)
    return {kind: round(statistics.mean(v), 2) for kind, v in scores.items()}


def plot(
    runs: dict[int, dict[str, list[dict]]],
    path: Path,
    measures=MEASURES["answer"],
    finals: dict[int, dict[str, dict[str, float]]] | None = None,
) -> None:
    """The per-step curves of each measure, and with ``finals`` (``final_eval`` per seed and
    run) a third panel: the final policies' GT accuracy per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from habitat_eqarm.data.io import atomic_path

    fig, axes = plt.subplots(1, 3 if finals else 2, figsize=(16 if finals else 11, 4))
    for ax, (key, title) in zip(axes[:2], measures, strict=True):
        for name, colour in (("grpo", "tab:blue"), ("control", "tab:gray")):
            for i, (_, by_name) in enumerate(sorted(runs.items())):
                steps, values = curve(by_name[name], key)
                window = min(10, len(values))
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                label = f"{'agent GRPO' if name == 'grpo' else 'lr-0 control'}" if i == 0 else None
                ax.plot(steps[window - 1 :], smooth, color=colour, alpha=0.8, label=label)
        ax.set_title(f"{title}\n{len(runs)} seeds, 10-step running mean")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if finals:
        ax, seeds = axes[2], sorted(finals)
        x = np.arange(len(seeds))
        bars = [("control", "tab:gray", "lr-0 control"), ("grpo", "tab:blue", "agent GRPO")]
        if "first_gt_accuracy" in finals[seeds[0]]["control"]:
            bars.insert(0, ("first", "tab:orange", "first answers"))
        width = 0.8 / len(bars)
        for j, (name, colour, label) in enumerate(bars):
            values = [
                finals[s]["control"]["first_gt_accuracy"]
                if name == "first"
                else finals[s][name]["gt_accuracy"]
                for s in seeds
            ]
            ax.bar(x + (j - (len(bars) - 1) / 2) * width, values, width, color=colour, label=label)
        ax.set_xticks(x, [f"seed {s}" for s in seeds])
        ax.set_title("GT accuracy of the final policies\n(every prompt, the same random numbers)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="GRPO seeds, comma-separated")
    parser.add_argument("--steps", type=int, default=120, help="GRPO steps per run")
    parser.add_argument("--png", default="docs/agent_grpo_learning.png", help="curves PNG")
    parser.add_argument("--lr", type=float, default=1e-3, help="GRPO learning rate")
    parser.add_argument("--format_steps", type=int, default=400, help="SFT steps of the agent")
    parser.add_argument("--rm", help="an EQA-RM trained by the toy RFT run already (skips it)")
    parser.add_argument("--mode", default="answer", choices=sorted(MEASURES), help="GRPO mode")
    parser.add_argument(
        "--eval_samples", type=int, default=16, help="answers per question in the final eval"
    )
    parser.add_argument(
        "--replot",
        nargs="+",
        metavar="RUNS_JSON",
        help="draw --png from the per-step logs of earlier runs (their --runs_json) and stop",
    )
    parser.add_argument("--runs_json", help="write the per-step measures here (for --replot)")
    args = parser.parse_args()
    (rm_key, _), (gt_key, _) = measures = MEASURES[args.mode]
    if args.replot:  # seeds run in separate processes, drawn together
        merged, finals = {}, {}
        for name in args.replot:
            data = json.loads(Path(name).read_text())
            merged.update({int(k): v for k, v in data["runs"].items()})
            finals.update({int(k): v for k, v in data.get("finals", {}).items()})
        plot(merged, Path(args.png), measures, finals)
        print(json.dumps({"png": args.png, "seeds": sorted(merged)}))
        return

    from habitat_eqarm.data.io import atomic_write_text
    from habitat_eqarm.testing import make_tiny_model
    from habitat_eqarm.testing.agent_toy import (
        CPU,
        SMALL,
        make_toy_questions,
        teach_agent_format,
    )
    from habitat_eqarm.testing.learning import rft_config
    from habitat_eqarm.testing.toy import make_toy_rft_set
    from habitat_eqarm.training.agent_grpo import train_agent_grpo
    from habitat_eqarm.training.agent_grpo_config import AgentGRPOConfig
    from habitat_eqarm.training.rft import train_rft

    tmp = Path(tempfile.mkdtemp(prefix="agent-learning-"))
    base = make_tiny_model(tmp / "tiny", seed=0)
    rm = Path(args.rm) if args.rm else tmp / "rft"
    if not args.rm:
        train_rft(rft_config(rm, base, make_toy_rft_set(tmp / "toy")))
    questions = make_toy_questions(tmp / "questions")
    rm_scores = rm_by_answer_kind(rm, questions)
    print(json.dumps({"rm_mean_score_by_answer": rm_scores}), flush=True)
    agent = teach_agent_format(
        tmp / "agent", base, questions, steps=args.format_steps, revision=args.mode == "revise"
    )

    runs: dict[int, dict[str, list[dict]]] = {}
    rows = []
    evals: dict[int, dict[str, dict[str, float]]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs[seed], evals[seed] = {}, {}
        for name, lr in (("control", 0.0), ("grpo", args.lr)):
            cfg = AgentGRPOConfig(
                output_dir=str(tmp / f"{name}-{seed}"),
                model_name_or_path=str(agent),
                data=str(questions),
                rm_model=str(rm),
                rm_device="cpu",
                rm_max_new_tokens=48,
                num_generations=8,
                per_device_train_batch_size=8,
                max_completion_length=48,
                learning_rate=lr,
                lr_scheduler_type="constant",
                weight_decay=0.0,
                max_steps=args.steps,
                logging_steps=1,
                save_steps=10_000,
                seed=seed,
                mode=args.mode,
                **CPU,
                **SMALL,
            )
            runs[seed][name] = train_agent_grpo(cfg).state.log_history
            evals[seed][name] = final_eval(cfg, Path(cfg.output_dir), args.eval_samples)
        effect = {
            key: late(runs[seed]["grpo"], key) - late(runs[seed]["control"], key)
            for key in (rm_key, gt_key)
        }
        # in mode revise, the keys named *rm_reward* / *gt_accuracy* hold the revised-minus-
        # first measures (``measures`` in the JSON names them)
        rows.append(
            {
                "seed": seed,
                "control_rm_reward": round(late(runs[seed]["control"], rm_key), 3),
                "grpo_rm_reward": round(late(runs[seed]["grpo"], rm_key), 3),
                "rm_reward_effect": round(effect[rm_key], 3),
                "control_gt_accuracy": round(late(runs[seed]["control"], gt_key), 3),
                "grpo_gt_accuracy": round(late(runs[seed]["grpo"], gt_key), 3),
                "gt_accuracy_effect": round(effect[gt_key], 3),
            }
        )
        if "first_gt_accuracy" in evals[seed]["control"]:  # revise: what was revised
            for key in ("first_gt_accuracy", "first_rm_reward"):
                rows[-1][f"final_{key}"] = round(evals[seed]["control"][key], 3)
        if evals[seed]:  # the final policies on every prompt
            for name in ("control", "grpo"):
                for key in ("gt_accuracy", "rm_reward", "purple_share", "unparsable_share"):
                    rows[-1][f"final_{name}_{key}"] = round(evals[seed][name][key], 3)
            for key in ("gt_accuracy", "rm_reward"):
                rows[-1][f"final_{key}_effect"] = round(
                    evals[seed]["grpo"][key] - evals[seed]["control"][key], 3
                )
        if args.mode == "revise":  # the revised answers' own reward, and the first answers'
            for name in ("control", "grpo"):
                rows[-1][f"{name}_revised_reward"] = round(late(runs[seed][name], RM_REWARD), 3)
            rows[-1]["first_reward"] = round(late(runs[seed]["control"], "revise/first_reward"), 3)
        print(json.dumps(rows[-1]), flush=True)
    plot(runs, Path(args.png), measures, evals)
    if args.runs_json:  # the per-step measures, for --replot
        keep = {"step", rm_key, gt_key, RM_REWARD, "revise/first_reward"}
        logged = {
            seed: {
                name: [{k: v for k, v in e.items() if k in keep} for e in h]
                for name, h in r.items()
            }
            for seed, r in runs.items()
        }
        atomic_write_text(args.runs_json, json.dumps({"runs": logged, "finals": evals}))
    (_, rm_title), (_, gt_title) = measures
    print(f"| seed | {rm_title}: control / GRPO | effect | {gt_title}: control / GRPO | effect |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['control_rm_reward']:.3f} / {r['grpo_rm_reward']:.3f} | "
            f"{r['rm_reward_effect']:+.3f} | {r['control_gt_accuracy']:.3f} / "
            f"{r['grpo_gt_accuracy']:.3f} | {r['gt_accuracy_effect']:+.3f} |"
        )
    if any(evals.values()):
        revise = args.mode == "revise"
        print(f"\nFinal policies, every {'revision row' if revise else 'question'}, ", end="")
        print(f"{args.eval_samples} answers each:\n")
        first = "first answers / " if revise else ""
        print(f"| seed | GT accuracy: {first}control / GRPO | effect ", end="")
        print(f'| EQA-RM reward: {first}control / GRPO | effect | "purple": control / GRPO |')
        print("|---|---|---|---|---|---|")
        for r in rows:
            cells = [str(r["seed"])]
            for key in ("gt_accuracy", "rm_reward"):
                firsts = f"{r[f'final_first_{key}']:.3f} / " if revise else ""
                cells.append(
                    f"{firsts}{r[f'final_control_{key}']:.3f} / {r[f'final_grpo_{key}']:.3f}"
                )
                cells.append(f"{r[f'final_{key}_effect']:+.3f}")
            purple = [r[f"final_{name}_purple_share"] for name in ("control", "grpo")]
            cells.append(f"{purple[0]:.3f} / {purple[1]:.3f}")
            print("| " + " | ".join(cells) + " |")
    result = {
        "mode": args.mode,
        "measures": [rm_key, gt_key],
        "steps": args.steps,
        "lr": args.lr,
        "seeds": rows,
        "min_rm_reward_effect": min(r["rm_reward_effect"] for r in rows),
        "min_gt_accuracy_effect": min(r["gt_accuracy_effect"] for r in rows),
        "mean_gt_accuracy_effect": round(statistics.mean(r["gt_accuracy_effect"] for r in rows), 3),
        "png": args.png,
        "rm_mean_score_by_answer": rm_scores,
    }
    if any(evals.values()):
        for key in ("gt_accuracy", "rm_reward"):
            result[f"min_final_{key}_effect"] = min(r[f"final_{key}_effect"] for r in rows)
        controls = [r["final_control_gt_accuracy"] for r in rows]
        result["final_control_gt_accuracy_sd"] = round(statistics.pstdev(controls), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
