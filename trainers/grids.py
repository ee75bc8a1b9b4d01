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
