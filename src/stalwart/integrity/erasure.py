"""Reed-Solomon erasure coding of stripes of equal-sized blocks (zfec backend).

Encoding goes through ISA-L when ``libisal`` is installed (same parity,
several times faster: see :mod:`stalwart.integrity._isal`); decoding, which
only repair needs, always goes through zfec.

A stripe is ``data`` blocks followed by ``parity`` parity blocks; any
``data`` of the ``data + parity`` shares rebuild the stripe. zfec is
systematic (data shares are the blocks themselves) and releases the GIL, so
stripes are encoded on worker threads. Encoding goes in sub-slices of
``_SLICE`` bytes so that all the inputs of one slice stay in the CPU cache.
A short final stripe is padded with virtual all-zero blocks, which never
need storing: they are known to be good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import zfec

from stalwart.errors import ConfigError
from stalwart.integrity._isal import load_encoder

__all__ = ["StripeCodec"]

_SLICE: Final = 256 * 1024
Buffer = bytes | bytearray | memoryview


class StripeCodec:
    """Encode and decode stripes of ``data`` blocks with ``parity`` parity blocks."""

    def __init__(
        self, data: int, parity: int, block_size: int, *, accelerated: bool = True
    ) -> None:
        if data < 1 or parity < 1 or data + parity > 256:
            raise ConfigError(
                f"invalid stripe {data}+{parity}: need data >= 1, parity >= 1, total <= 256"
            )
        self.data = data
        self.parity = parity
        self.block_size = block_size
        self._encoder = zfec.Encoder(data, data + parity)
        self._decoder = zfec.Decoder(data, data + parity)
        self._zero = bytes(block_size)
        self._parity_nums = list(range(data, data + parity))
        self._fast = load_encoder(data, parity, self._coefficients()) if accelerated else None

    @property
    def backend(self) -> str:
        """Which library encodes: ``isa-l`` or ``zfec``."""
        return "isa-l" if self._fast is not None else "zfec"

    def _coefficients(self) -> bytes:
        """zfec's parity matrix (``parity`` rows of ``data`` bytes): the parity of a
        stripe whose block j is a single 1 byte, all others 0, is column j."""
        matrix = bytearray(self.parity * self.data)
        for j in range(self.data):
            unit = [b"\x01" if i == j else b"\x00" for i in range(self.data)]
            for p, share in enumerate(self._encoder.encode(unit, self._parity_nums)):
                matrix[p * self.data + j] = share[0]
        return bytes(matrix)

    def _padded(self, blocks: Sequence[Buffer]) -> list[memoryview]:
        if not 1 <= len(blocks) <= self.data:
            raise ValueError(f"a stripe has 1..{self.data} data blocks, got {len(blocks)}")
        views = [memoryview(b) for b in blocks]
        for i, view in enumerate(views):
            if len(view) != self.block_size:
                views[i] = memoryview(bytes(view) + bytes(self.block_size - len(view)))
        views.extend(memoryview(self._zero) for _ in range(self.data - len(views)))
        return views

    def encode_into(self, blocks: Sequence[Buffer], out: memoryview) -> None:
        """Write the stripe's ``parity`` blocks, back to back, into ``out``.

        Blocks shorter than ``block_size`` (the file's last) are zero-padded.
        """
        views = self._padded(blocks)
        size = self.block_size
        if self._fast is not None:
            self._fast.encode_into(views, out, size)
            return
        for start in range(0, size, _SLICE):
            end = min(start + _SLICE, size)
            shares = self._encoder.encode([v[start:end] for v in views], self._parity_nums)
            for p, share in enumerate(shares):
                out[p * size + start : p * size + end] = share

    def encode(self, blocks: Sequence[Buffer]) -> bytes:
        """The stripe's parity blocks concatenated."""
        out = bytearray(self.parity * self.block_size)
        self.encode_into(blocks, memoryview(out))
        return bytes(out)

    def decode(self, shares: Mapping[int, Buffer], data_count: int) -> list[bytes]:
        """Rebuild the stripe's ``data_count`` real data blocks from good shares.

        ``shares`` maps share number (0..data-1: data blocks, data..: parity
        blocks) to full-size contents; the virtual zero blocks of a short
        stripe are added here. Raises ValueError when too few shares remain.
        """
        good = dict(shares)
        for virtual in range(data_count, self.data):
            good.setdefault(virtual, self._zero)
        if len(good) < self.data:
            raise ValueError(f"stripe has {len(good)} good shares, needs {self.data} to rebuild")
        nums = sorted(good)[: self.data]
        # zfec wants primary shares in their own positions: data shares first.
        nums.sort(key=lambda n: (n >= self.data, n))
        ordered = [memoryview(good[n]) for n in nums]
        rebuilt = self._decoder.decode(ordered, nums)
        return [bytes(b) for b in rebuilt[:data_count]]
