"""A small synthetic episode, drawn on the fly: a walk through a few simple rooms.

Used where no OpenEQA data is available (a fresh machine, CI) so that every command can run.
Each room has a wall and floor colour and a few objects (coloured boxes and discs with names);
the camera pans across each room in turn. The questions are generated from the scene layout,
so their answers are true of the frames.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from habitat_eqarm.data.episode import EpisodeMemory, write_episode_folder
from habitat_eqarm.data.schema import EQAInstance

COLOURS = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 200, 40),
    "white": (235, 235, 235),
    "brown": (120, 80, 40),
}
ROOMS = {
    "kitchen": ("fridge", "table", "oven"),
    "bedroom": ("bed", "lamp", "wardrobe"),
    "living room": ("sofa", "tv", "plant"),
    "bathroom": ("sink", "towel", "bathtub"),
}


@dataclass
class SyntheticRoom:
    """One room of the synthetic episode: name, colours and objects ``(name, colour, x)``."""

    name: str
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    objects: list[tuple[str, str, float]]


def make_rooms(seed: int = 0, n_rooms: int = 3) -> list[SyntheticRoom]:
    """Draw a random layout: ``n_rooms`` rooms with two objects of distinct colours each."""
    rng = random.Random(seed)
    rooms = []
    for name in rng.sample(sorted(ROOMS), n_rooms):
        objects = rng.sample(ROOMS[name], 2)
        colours = rng.sample(sorted(COLOURS), 2)
        xs = sorted(rng.uniform(0.15, 0.85) for _ in objects)
        if xs[1] - xs[0] < 0.3:
            xs = [0.25, 0.7]
        wall = tuple(rng.randint(90, 200) for _ in range(3))
        floor = tuple(rng.randint(30, 90) for _ in range(3))
        rooms.append(SyntheticRoom(name, wall, floor, list(zip(objects, colours, xs, strict=True))))
    return rooms


def render_room(room: SyntheticRoom, pan: float, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """Render one view of ``room`` with the camera panned by ``pan`` (-0.5..0.5 of the width)."""
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, room.wall)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, int(h * 0.65), w, h], fill=room.floor)
    for i, (name, colour, x) in enumerate(room.objects):
        cx = int((x - pan) * w)
        rgb = COLOURS[colour]
        if i % 2 == 0:
            draw.rectangle([cx - w // 8, int(h * 0.4), cx + w // 8, int(h * 0.8)], fill=rgb)
        else:
            r = w // 12
            draw.ellipse([cx - r, int(h * 0.55) - r, cx + r, int(h * 0.55) + r], fill=rgb)
        draw.text((cx - 3 * len(name), int(h * 0.85)), name, fill=(255, 255, 255))
    draw.text((6, 6), room.name, fill=(0, 0, 0))
    return np.asarray(image)


def synthetic_frames(
    rooms: list[SyntheticRoom], frames_per_room: int = 20, size: tuple[int, int] = (320, 240)
) -> np.ndarray:
    """All frames of the walk: each room panned left to right, ``(N, H, W, 3)`` uint8."""
    pans = np.linspace(-0.2, 0.2, frames_per_room)
    return np.stack([render_room(room, float(p), size) for room in rooms for p in pans])


def synthetic_questions(rooms: list[SyntheticRoom], episode_id: str) -> list[EQAInstance]:
    """Questions whose answers follow from the layout (recognition, attribute, localization)."""
    out = []
    for r, room in enumerate(rooms):
        (name_a, colour_a, _), (name_b, colour_b, _) = room.objects
        items = [
            (f"What colour is the {name_a}?", colour_a, "attribute recognition"),
            (f"In which room is the {name_b}?", room.name, "object localization"),
            (
                f"What is to the right of the {name_a} in the {room.name}?",
                name_b,
                "spatial understanding",
            ),
        ]
        for q, (question, answer, category) in enumerate(items):
            out.append(
                EQAInstance(
                    question_id=f"{episode_id}-q{r}{q}",
                    question=question,
                    category=category,
                    source="other",
                    episode_id=episode_id,
                    gt_answer=answer,
                    meta={"synthetic": True, "colour_b": colour_b},
                )
            )
    return out


def make_synthetic_episode(
    folder: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    n_rooms: int = 3,
    frames_per_room: int = 20,
    size: tuple[int, int] = (320, 240),
) -> tuple[EpisodeMemory, list[EQAInstance]]:
    """A synthetic episode and its questions.

    With ``folder`` the episode is written in OpenEQA's layout (RGB, a flat depth map, poses
    along a straight walk, intrinsics) and the memory is read back from it; the instances then
    carry ``episode_path``. Without it the memory holds the frames in RAM.
    """
    rooms = make_rooms(seed, n_rooms)
    frames = synthetic_frames(rooms, frames_per_room, size)
    episode_id = f"synthetic/seed{seed}"
    questions = synthetic_questions(rooms, episode_id)
    if folder is None:
        return EpisodeMemory.from_frames(frames, fps=10.0), questions
    n = len(frames)
    poses = np.repeat(np.eye(4)[None], n, axis=0)
    poses[:, 0, 3] = np.linspace(0.0, 0.5 * n, n)  # walk along x, half a metre per frame
    depth = np.full((n, size[1], size[0]), 2000, dtype=np.uint16)
    focal = size[0] / 2
    intrinsics = {"color": np.array([[focal, 0, size[0] / 2], [0, focal, size[1] / 2], [0, 0, 1]])}
    path = write_episode_folder(folder, frames, depth=depth, poses=poses, intrinsics=intrinsics)
    for inst in questions:
        inst.episode_path = str(Path(path))
    return EpisodeMemory.from_folder(path), questions
