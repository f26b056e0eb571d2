import numpy as np
import pytest

from habitat_eqarm.training.augment import (
    jumble_reasoning,
    mask_frames,
    non_identity_permutation,
    shuffle_frames,
)


def frames(n=5, h=224, w=224):
    return np.random.default_rng(0).integers(1, 255, (n, h, w, 3), dtype=np.uint8)


def test_permutations_are_never_the_identity_and_are_seeded():
    for seed in range(200):
        assert list(non_identity_permutation(2, seed)) == [1, 0]
        perm = non_identity_permutation(5, seed)
        assert sorted(perm) == [0, 1, 2, 3, 4] and list(perm) != [0, 1, 2, 3, 4]
    assert list(non_identity_permutation(5, 3)) == list(non_identity_permutation(5, 3))
    assert non_identity_permutation(1, 0) is None and non_identity_permutation(0, 0) is None


def test_shuffle_frames():
    original = frames()
    shuffled, perm = shuffle_frames(original, seed=1)
    np.testing.assert_array_equal(shuffled, original[perm])
    assert not np.array_equal(shuffled, original)
    assert shuffle_frames(original[:1], seed=1) is None  # inactive contrast


def test_mask_frames_covers_15_percent_with_16px_squares():
    original = frames()
    masked = mask_frames(original, seed=0)
    assert masked.dtype == original.dtype and masked is not original
    zero = (masked == 0).all(axis=-1)
    per_frame = zero.reshape(5, -1).mean(axis=1)
    # 224x224 = 196 grid squares; round(0.15 * 196) = 29 squares = 14.8 % of each frame
    np.testing.assert_allclose(per_frame, 29 * 256 / 224**2)
    cells = zero[0].reshape(14, 16, 14, 16).all(axis=(1, 3))
    assert cells.sum() == 29  # whole squares on the 16-pixel grid
    assert not np.array_equal(zero[0], zero[1])  # each frame its own squares
    np.testing.assert_array_equal(original[~zero], masked[~zero])  # the rest untouched
    np.testing.assert_array_equal(mask_frames(original, seed=0), masked)  # seeded


def test_mask_float_frames_and_bad_input():
    normalised = np.ones((2, 32, 48, 3), np.float32)
    masked = mask_frames(normalised, seed=0, fraction=0.25)
    assert (masked == 0.0).all(axis=-1).mean() == pytest.approx(2 * 256 / (32 * 48))
    with pytest.raises(ValueError, match="smaller than one 16x16 square"):
        mask_frames(np.ones((1, 8, 8, 3)), seed=0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        mask_frames(np.ones((8, 8, 3)), seed=0)
    with pytest.raises(ValueError, match="fraction"):
        mask_frames(normalised, fraction=1.5)


def test_jumble_reasoning():
    steps = ["I enter the kitchen.", "I see a red fridge.", "So the fridge is red."]
    for seed in range(50):
        jumbled = jumble_reasoning(steps, seed)
        assert sorted(jumbled) == sorted(steps) and jumbled != steps
    assert jumble_reasoning(["only one step"], 0) is None


def chat_prompt(n_images=3):
    from PIL import Image

    images = [Image.fromarray(f) for f in frames(n_images, 32, 32)]
    content = [*({"type": "image", "image": im} for im in images), {"type": "text", "text": "t"}]
    return [{"role": "system", "content": "s"}, {"role": "user", "content": content}]


def test_the_prompt_perturbations_are_a_table_keyed_by_condition():
    from types import SimpleNamespace

    from habitat_eqarm.training.augment import CONDITIONS, PERTURBATIONS, perturb_prompt

    assert tuple(PERTURBATIONS) == CONDITIONS == ("temporal", "spatial", "reasoning")
    args = SimpleNamespace(mask_fraction=0.15, mask_patch=16, mask_value=0.0)
    prompt, row = chat_prompt(), {"question_id": "q", "instance": "{}"}
    before = [np.asarray(p["image"]).tobytes() for p in prompt[1]["content"][:3]]
    out = perturb_prompt("temporal", prompt, row, np.random.default_rng(0), args)
    after = [np.asarray(p["image"]).tobytes() for p in out[1]["content"][:3]]
    assert sorted(after) == sorted(before) and after != before
    assert [np.asarray(p["image"]).tobytes() for p in prompt[1]["content"][:3]] == before
    rng = np.random.default_rng(0)
    assert perturb_prompt("temporal", chat_prompt(1), row, rng, args) is None  # inactive
    with pytest.raises(ValueError, match="unknown condition 'colour'"):
        perturb_prompt("colour", prompt, row, rng, args)
