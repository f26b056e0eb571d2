import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block_after(heading: str) -> str:
    text = README.read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_gym_example_runs_as_written(tiny_model_path, openeqa_dir):
    code = python_block_after("## EQA-RM as a Gymnasium reward")
    assert len(code.strip().splitlines()) <= 5
    code = code.replace('"Qwen/Qwen2-VL-2B-Instruct"', repr(str(tiny_model_path)))
    scope: dict = {}
    exec(code, scope)
    env, obs, info = scope["env"], scope["obs"], scope["info"]
    assert obs["frame"].shape == (720, 1280, 3) and info["num_frames"] == 168
    _, reward, terminated, _, info = env.step({"kind": 1, "answer": "Bedroom", "reasoning": "x"})
    assert terminated and 0.0 <= reward <= 1.0 and info["eqarm"]["k"] == 4


def test_readme_public_api_example_runs_as_written():
    scope: dict = {}
    exec(python_block_after("## Public API"), scope)
    obs, _ = scope["env"].reset(seed=0)
    assert obs["frame"].ndim == 3 and scope["EQARMReward"].__name__ == "EQARMReward"


def test_readme_agent_example_runs_as_written(tiny_model_path):
    """The agent and the two-turn reward wrapper, tiny model swapped in for both models."""
    code = python_block_after("## Train an agent against EQA-RM")
    for model in ('"Qwen/Qwen2-VL-7B-Instruct"', '"Qwen/Qwen2-VL-2B-Instruct"'):
        assert model in code
        code = code.replace(model, repr(str(tiny_model_path)))
    scope: dict = {}
    exec(code, scope)
    episode, agent = scope["episode"], scope["agent"]
    assert episode.terminated and agent.last_output["prompt_id"] in ("eqarm-gen-v1", "eqarm-rev-v1")
    answered = episode.actions[0]["answer"] != ""  # the tiny agent may write no answer
    assert len(episode.actions) == (2 if answered else 1)
    assert ("first" in episode.info["eqarm"]) == answered
    scope["env"].close()
    agent.close()
