import base64

import numpy as np
import pytest

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest
from habitat_eqarm.rewards.backends.chat_format import (
    decode_image_url,
    encode_frame,
    from_openai_messages,
    to_openai_messages,
)
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages

INSTANCE = EQAInstance(question_id="q", question="Where is the lamp?", predicted_answer="desk")


def frames(n, h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_images_travel_in_placeholder_order_and_come_back_exactly():
    request = GenerationRequest(build_messages(REWARD_MODEL_PROMPT, INSTANCE, 3), frames(3))
    messages = to_openai_messages(request, lambda f: encode_frame(f, "png"))
    parts = messages[1]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    back = from_openai_messages(messages)
    np.testing.assert_array_equal(back.frames, request.frames)  # PNG: lossless, same order
    assert back.messages == request.messages


def test_a_video_placeholder_becomes_its_frames_as_images():
    messages = build_messages(REWARD_MODEL_PROMPT, INSTANCE, 4, as_video=True)
    request = GenerationRequest(messages, frames(4), as_video=True)
    parts = to_openai_messages(request)[1]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 4 + ["text"]


def test_placeholders_must_match_frames():
    request = GenerationRequest(build_messages(REWARD_MODEL_PROMPT, INSTANCE, 2), frames(3))
    with pytest.raises(ValueError, match="2 image placeholder"):
        to_openai_messages(request)


def test_frames_are_shrunk_to_max_pixels_and_jpeg_is_smaller():
    frame = frames(1, 480, 640)[0]
    url = encode_frame(frame, "jpeg", max_pixels=100 * 100)
    image = decode_image_url(url)
    assert image.shape[0] * image.shape[1] <= 100 * 100 and image.shape[1] / image.shape[
        0
    ] == pytest.approx(4 / 3, rel=0.05)
    assert len(encode_frame(frame, "jpeg")) < len(encode_frame(frame, "png"))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://example.com/a.png", "data URL"),
        ("file:///etc/passwd", "data URL"),
        ("data:image/png,rawbytes", "data URL"),
        ("data:image/svg+xml;base64,PHN2Zz4=", "not accepted"),
        ("data:image/png;base64,@@@", "base64"),
        ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "valid base64"),
    ],
)
def test_only_decodable_data_urls_are_read(url, needle):
    with pytest.raises(ValueError, match=needle):
        decode_image_url(url)


def test_oversized_images_are_refused_before_decoding():
    url = encode_frame(frames(1, 64, 64)[0], "png")
    with pytest.raises(ValueError, match="64x64 pixels exceeds the limit of 1000"):
        decode_image_url(url, max_pixels=1000)


def test_images_of_one_request_must_share_a_size():
    parts = [
        {"type": "image_url", "image_url": {"url": encode_frame(f, "png")}}
        for f in (frames(1, 8, 8)[0], frames(1, 8, 16)[0])
    ]
    with pytest.raises(ValueError, match="image 2 is 16x8 but image 1 is 8x8"):
        from_openai_messages([{"role": "user", "content": parts}])
