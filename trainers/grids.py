"""Image grids: a batch of generated images in [-1, 1] as one PNG a person can look at."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 1) -> Image.Image:
    """Tile (N, C, H, W) images in [-1, 1] into one picture, ``columns`` wide (default square)."""
    n, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pixels = ((np.clip(images, -1, 1) + 1) * 127.5).round().astype(np.uint8)
    canvas = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        dtype=np.uint8,
    )
    for i in range(n):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = pixels[i].transpose(1, 2, 0)
    mode = "L" if channels == 1 else "RGB"
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas, mode=mode)


def grid_png(images: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of ``image_grid(images)``, enlarged ``scale`` times (nearest neighbour)."""
    grid = image_grid(images)
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def save_images(images: np.ndarray, folder: Path) -> None:
    """Each image as its own PNG file (for ``gentune fid`` and other tools)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        image_grid(image[None], columns=1, padding=0).save(folder / f"{i:05d}.png")


def scatter_image(points: np.ndarray, centres: np.ndarray, size: int = 96) -> np.ndarray:
    """2-D samples as a (1, 3, size, size) picture in [-1, 1] that ``grid_png`` can save:
    the density of ``points`` in warm tones, each of the data's ``centres`` boxed in green."""
    extent = float(np.abs(centres).max()) * 1.4 + 0.3
    edges = np.linspace(-extent, extent, size + 1)
    density, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=(edges, edges))
    density = np.log1p(density)[::-1]  # y up
    density /= max(float(density.max()), 1e-9)
    density = np.where(density > 0, 0.35 + 0.65 * density, 0.0)  # lone samples stay visible
    rgb = np.zeros((3, size, size), dtype=np.float32)
    rgb[0] = density
    rgb[1] = 0.55 * density
    cells = np.clip(((centres + extent) / (2 * extent) * size).astype(int), 0, size - 1)
    box = np.zeros((size, size), dtype=bool)
    for column, row in cells:  # a hollow square around each centre, so samples stay visible
        top, left = size - 1 - row, column
        lo_r, hi_r = max(top - 3, 0), min(top + 3, size - 1)
        lo_c, hi_c = max(left - 3, 0), min(left + 3, size - 1)
        box[lo_r, lo_c : hi_c + 1] = box[hi_r, lo_c : hi_c + 1] = True
        box[lo_r : hi_r + 1, lo_c] = box[lo_r : hi_r + 1, hi_c] = True
    rgb[1][box] = 0.8
    return (rgb * 2 - 1)[None]
