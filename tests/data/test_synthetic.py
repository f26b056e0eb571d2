import numpy as np

from habitat_eqarm.data.synthetic import COLOURS, make_rooms, make_synthetic_episode


def test_synthetic_episode_in_memory_is_deterministic():
    a, qa = make_synthetic_episode(seed=3)
    b, qb = make_synthetic_episode(seed=3)
    np.testing.assert_array_equal(a.frames(), b.frames())
    assert qa == qb and len(qa) == 9


def test_answers_are_true_of_the_frames():
    rooms = make_rooms(seed=0)
    memory, questions = make_synthetic_episode(seed=0)
    colour_q = [q for q in questions if q.question.startswith("What colour")]
    for r, (room, q) in enumerate(zip(rooms, colour_q, strict=True)):
        frame = memory.frame(r * 20 + 10)  # the middle of the room's pan
        colour = np.array(COLOURS[q.gt_answer])
        assert (np.abs(frame.astype(int) - colour).sum(axis=2) == 0).sum() > 500, room.name


def test_written_episode_has_depth_poses_intrinsics(synthetic_folder):
    memory, questions = synthetic_folder
    assert memory.kind == "folder" and len(memory) == 60
    assert memory.has_depth and memory.has_poses and "color" in memory.intrinsics
    assert all(q.episode_path == str(memory.path) for q in questions)
