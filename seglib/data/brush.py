"""Label Studio's brush masks: the run-length code its `brushlabels` regions carry, written and read with NumPy.

A brush region's `value.rle` is a list of bytes: thi.ng's rle-pack code of the mask's RGBA pixels, row by row,
four values a pixel (Label Studio reads the alpha channel). The stream of bits starts with the count of values
(32 bits), the word size less one (5 bits) and four run-length field sizes less one (4 bits each); then blocks
until every value is given: a bit (1: one value repeated, 0: values one by one), two bits choosing a field size,
the block's length less one in that many bits, then the value (once) or the values (each in a word).

`encode_mask` writes what Label Studio's own converter (`label_studio_sdk.converter.brush.mask2rle`) writes for
the same mask, byte for byte: word size 8, field sizes 3, 4, 8 and 16, every pixel's four values equal, a run
longer than the largest field split into full blocks, and the bits padded with 1 to 8 zeros. `decode_values`
reads any header, as Label Studio's editor writes it when a person draws (its brush strokes may hold soft alpha).
"""

from __future__ import annotations

import numpy as np

from seglib.infra.errors import DataError

WORD_BITS = 8
FIELD_BITS = (3, 4, 8, 16)  # the run-length fields Label Studio's converter writes, smallest first
CHANNELS = 4  # RGBA: a brush mask gives every pixel four values; its alpha says person
PERSON_VALUE = 255  # what a person pixel's channels hold in a mask we write
ALPHA_PERSON_ABOVE = 127  # a drawn pixel whose alpha is above this is person (a stroke's soft edge: half or more)


def encode_mask(mask: np.ndarray) -> list[int]:
    """The `rle` bytes of a HxW mask (nonzero = person), as Label Studio's converter encodes it."""
    if mask.ndim != 2:
        raise ValueError(f"a brush mask is 2-D (height, width), not of shape {mask.shape}")
    values = np.repeat(np.where(np.asarray(mask) != 0, PERSON_VALUE, 0).astype(np.int64).ravel(), CHANNELS)
    return encode_values(values)


def encode_values(values: np.ndarray) -> list[int]:
    """The rle-pack bytes of a 1-D array of values 0-255, as the converter's `encode_rle` writes them."""
    values = np.asarray(values, dtype=np.int64).ravel()
    header = [(len(values), 32), (WORD_BITS - 1, 5), *((size - 1, 4) for size in FIELD_BITS)]
    fields = np.array(header, dtype=np.int64).reshape(-1, 2)
    if len(values):
        fields = np.concatenate([fields, _run_fields(values)])
    bits = _bits(fields[:, 0], fields[:, 1])
    padding = WORD_BITS - len(bits) % WORD_BITS  # 1 to 8 zeros, a whole zero byte when none are needed: as theirs
    return np.packbits(np.concatenate([bits, np.zeros(padding, np.uint8)])).tolist()


def _run_fields(values: np.ndarray) -> np.ndarray:
    """(value, bits) of every field after the header: per block, its kind and field choice (3 bits), its length
    less one and its value."""
    ends = np.append(np.flatnonzero(values[1:] != values[:-1]), len(values) - 1)
    lengths = np.diff(np.append(-1, ends))
    run_values = values[ends]
    choice = np.searchsorted(np.array([2 ** b for b in FIELD_BITS[:3]]), lengths)  # 0..3: the smallest field that fits
    longest = 2 ** FIELD_BITS[-1]
    blocks = np.where(choice == 3, -(-lengths // longest), 1)  # past the largest field: full blocks, then the rest
    block_run = np.repeat(np.arange(len(lengths)), blocks)
    first = np.cumsum(blocks) - blocks
    block_len = np.where(np.arange(len(block_run)) - first[block_run] < blocks[block_run] - 1, longest,
                         lengths[block_run] - (blocks[block_run] - 1) * longest)
    block_choice = choice[block_run]
    single = lengths[block_run] == 1  # a run of one: a block of one value given one by one ("0", field 0, "000")
    control = np.where(single, 0, 4 + block_choice)
    width = np.array(FIELD_BITS)[block_choice]
    per_block = np.stack([control, np.full_like(control, 3), block_len - 1, width, run_values[block_run],
                          np.full_like(control, WORD_BITS)], axis=1)
    return per_block.reshape(-1, 2)


def _bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Each value written in its width of bits, most significant first, one after another."""
    field = np.repeat(np.arange(len(widths)), widths)
    position = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths)
    return ((values[field] >> (widths[field] - 1 - position)) & 1).astype(np.uint8)


def decode_values(rle, where: str = "brush region") -> np.ndarray:
    """The values (uint8) of an rle-pack byte list, read by its own header; a DataError naming `where` for bytes
    that are not such a code."""
    try:
        data = np.asarray(rle, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: rle is not a list of bytes") from None
    if data.ndim != 1 or len(data) < 7 or (data < 0).any() or (data > 255).any():
        raise DataError(f"{where}: rle is not a list of bytes 0-255 holding a brush mask")
    reader = _Bits(np.unpackbits(data.astype(np.uint8)), where)
    count, word = reader.read(32), reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8)
    i = 0
    while i < count:
        repeated = reader.read(1)
        j = i + 1 + reader.read(sizes[reader.read(2)])
        if j > count:
            raise DataError(f"{where}: rle holds more values than its header's {count}")
        if repeated:
            out[i:j] = reader.read(word)
        else:
            out[i:j] = reader.words(j - i, word)
        i = j
    return out


class _Bits:
    """A stream of bits read as whole numbers, a DataError naming the region when it ends too soon."""

    def __init__(self, bits: np.ndarray, where: str):
        self.bits, self.at, self.where = bits, 0, where

    def read(self, width: int) -> int:
        chunk = self._take(width)
        return int(chunk.dot(1 << np.arange(width - 1, -1, -1, dtype=np.int64))) if width else 0

    def words(self, n: int, width: int) -> np.ndarray:
        chunk = self._take(n * width).reshape(n, width).astype(np.int64)
        return chunk.dot(1 << np.arange(width - 1, -1, -1, dtype=np.int64))

    def _take(self, width: int) -> np.ndarray:
        if self.at + width > len(self.bits):
            raise DataError(f"{self.where}: rle ends in the middle of its code (truncated?)")
        chunk = self.bits[self.at:self.at + width].astype(np.int64)
        self.at += width
        return chunk


def decode_mask(rle, height: int, width: int, where: str = "brush region") -> np.ndarray:
    """A brush region's mask, HxW uint8 0/1 (person where its alpha is above ALPHA_PERSON_ABOVE); a DataError
    naming `where` when its values are not the RGBA pixels of a `width`x`height` image."""
    values = decode_values(rle, where)
    if len(values) != height * width * CHANNELS:
        raise DataError(f"{where}: rle holds {len(values)} values, not the {height * width * CHANNELS} of a "
                        f"{width}x{height} RGBA image")
    return (values.reshape(height, width, CHANNELS)[:, :, 3] > ALPHA_PERSON_ABOVE).astype(np.uint8)
