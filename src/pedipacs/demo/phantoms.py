"""Cheap pixel phantoms for the demo data: ellipses, seeded noise and speckle.

Pure numpy: the same generator state gives the same pixels, so the demo files are
reproducible byte for byte.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def ellipse(
    shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]
) -> NDArray[np.bool_]:
    """A filled ellipse; centre and radii are fractions of the rows and columns."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    dy = (y / shape[0] - centre[0]) / radii[0]
    dx = (x / shape[1] - centre[1]) / radii[1]
    return np.asarray(dy * dy + dx * dx <= 1.0)


def ct_head_slice(
    rng: np.random.Generator, rows: int, columns: int, height: float
) -> NDArray[np.float32]:
    """Hounsfield units of a head slice at `height` (0 = skull base, 1 = vertex)."""
    shape = (rows, columns)
    scale = math.sqrt(max(0.04, 1 - ((height - 0.4) / 0.62) ** 2))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[ellipse(shape, (0.5, 0.5), (0.42 * scale, 0.36 * scale))] = 20.0  # scalp
    hu[ellipse(shape, (0.5, 0.5), (0.40 * scale, 0.34 * scale))] = 1100.0  # skull
    hu[ellipse(shape, (0.5, 0.5), (0.37 * scale, 0.31 * scale))] = 32.0  # brain
    if 0.35 < height < 0.75:
        for column in (0.45, 0.55):  # lateral ventricles
            hu[ellipse(shape, (0.47, column), (0.12 * scale, 0.03))] = 4.0
    hu += rng.standard_normal(shape, dtype=np.float32) * 5.0
    return hu


# Radiograph phantoms: (centre, radii, added signal); bone bright, air dark as hung.
RADIOGRAPH_SHAPES = {
    "CHEST": (
        ((0.55, 0.5), (0.45, 0.42), 900.0),  # trunk
        ((0.42, 0.32), (0.28, 0.13), -450.0),  # right lung
        ((0.42, 0.68), (0.28, 0.13), -450.0),  # left lung
        ((0.6, 0.56), (0.14, 0.15), 350.0),  # heart
        ((0.55, 0.5), (0.48, 0.035), 1100.0),  # spine
    ),
    "LIMB": (
        ((0.5, 0.5), (0.55, 0.22), 900.0),  # soft tissue
        ((0.28, 0.5), (0.25, 0.07), 1300.0),  # proximal bone
        ((0.74, 0.5), (0.23, 0.07), 1300.0),  # distal bone
    ),
}


def radiograph(
    rng: np.random.Generator, body_part: str, shape: tuple[int, int]
) -> NDArray[np.uint16]:
    """12-bit radiograph: phantom plus heel-effect gradient and quantum noise."""
    kind = "CHEST" if body_part == "CHEST" else "LIMB"
    signal = np.full(shape, 250.0, dtype=np.float32)
    for centre, radii, value in RADIOGRAPH_SHAPES[kind]:
        signal[ellipse(shape, centre, radii)] += value
    signal += np.linspace(0.0, 150.0, shape[0], dtype=np.float32)[:, np.newaxis]
    signal += rng.standard_normal(shape, dtype=np.float32) * 40.0
    return signal.clip(0, 4095).astype(np.uint16)


def ultrasound_clip(
    rng: np.random.Generator, frames: int, rows: int, columns: int, is_colour: bool
) -> NDArray[np.uint8]:
    """A sector scan with speckle and a pulsating hypoechoic structure."""
    y, x = np.ogrid[:rows, :columns]
    depth = np.hypot(y, x - columns / 2) / rows
    sector = (depth < 0.97) & (np.abs(np.arctan2(x - columns / 2, y + 1e-3)) < 0.6)
    speckle = rng.rayleigh(0.55, (rows, columns)).astype(np.float32)
    clip = np.zeros((frames, rows, columns), dtype=np.uint8)
    for frame in range(frames):
        phase = math.sin(2 * math.pi * frame / 16)
        lumen = ellipse((rows, columns), (0.55, 0.5), (0.16 + 0.02 * phase, 0.12))
        echo = np.where(lumen, 0.15, 0.7) * np.exp(-1.2 * depth) * speckle
        echo *= rng.uniform(0.85, 1.15, (rows, columns)).astype(np.float32)
        clip[frame] = np.where(sector, (echo * 180).clip(0, 255), 0).astype(np.uint8)
    if not is_colour:
        return clip
    rgb = np.repeat(clip[..., np.newaxis], 3, axis=-1)
    flow = ellipse((rows, columns), (0.55, 0.5), (0.1, 0.07))
    for frame in range(frames):
        # Flow towards the probe is red, away blue; it alternates with the cardiac phase.
        channel = 0 if math.sin(2 * math.pi * frame / 16) >= 0 else 2
        rgb[frame][flow] = (0, 0, 0)
        rgb[frame][flow, channel] = 200
    return rgb
