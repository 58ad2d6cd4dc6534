"""The input sizes a photo is predicted at, and the probabilities averaged over them.

Scale-aware input: a network trained at 448 px shows a 192x256 photo's figure far larger than any it learned from
when it magnifies the photo to 448 px. With `max_upscale` F the input side is at most the photo's longest side
times F, rounded down to the network's stride (never below one stride), and never above the size asked for: the
photo is never magnified more than F times (a photo shorter than one stride excepted). Rounding up instead would
exceed F by up to one stride.

Multi-scale: each size's probabilities are mapped back to the photo's own resolution and averaged there; sizes that
the cap makes equal count once. Flip TTA is the network's own and applies at each size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from seglib.geometry import network_input, to_photo


def capped_size(size: int, height: int, width: int, max_upscale: float, multiple: int) -> int:
    """The input size for an HxW photo: `size`, or less where it would magnify the photo's longest side more than
    `max_upscale` times (0: no cap); a multiple of `multiple` when it is capped."""
    if not max_upscale:
        return int(size)
    most = int(max(height, width) * max_upscale // multiple) * multiple
    return int(min(size, max(multiple, most)))


def photo_sizes(sizes: tuple[int, ...], height: int, width: int, max_upscale: float, multiple: int
                ) -> tuple[int, ...]:
    """The distinct input sizes an HxW photo is predicted at: each of `sizes`, capped (`capped_size`)."""
    return tuple(sorted({capped_size(s, height, width, max_upscale, multiple) for s in sizes}))


def averaged_over_sizes(network: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray],
                        sizes: list[tuple[int, ...]], geometry: str, multiple: int) -> list[np.ndarray]:
    """Probabilities (HxW float32) for each HxWx3 uint8 photo: `network` ((N,3,h,w) float32 -> (N,h,w)) run at each
    of the photo's `sizes`, mapped back to the photo, averaged. Inputs of one shape are batched together; with one
    size per photo this is exactly one prediction per photo."""
    jobs = [(i, size) for i, image_sizes in enumerate(sizes) for size in image_sizes]
    inputs = [network_input(images[i], size, geometry, multiple) for i, size in jobs]
    by_shape: dict[tuple, list[int]] = {}
    for j, array in enumerate(inputs):  # one shape per square size; rect inputs differ by aspect too
        by_shape.setdefault(array.shape, []).append(j)
    sums: list[np.ndarray | None] = [None] * len(images)
    for group in by_shape.values():
        for j, prob in zip(group, network(np.stack([inputs[j] for j in group])), strict=True):
            i = jobs[j][0]
            photo = to_photo(prob, images[i].shape[0], images[i].shape[1], geometry)
            sums[i] = photo if sums[i] is None else sums[i] + photo
    return [total if len(sizes[i]) == 1 else (total / np.float32(len(sizes[i]))).astype(np.float32)
            for i, total in enumerate(sums)]
