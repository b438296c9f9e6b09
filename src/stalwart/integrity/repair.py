"""Repair a damaged file in place: from parity, else from ranges fetched elsewhere.

Only the damaged stripes are read (their surviving data blocks and their
parity blocks), so repairing one block of a large file costs one stripe of
I/O. Every rebuilt block is checked against the manifest's block digest
before it is written; a stripe with more damage than parity is left for
``fetch`` (ranged reads from the source or another replica).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stalwart.integrity.digests import digest_of
from stalwart.integrity.erasure import StripeCodec
from stalwart.integrity.manifest import Manifest
from stalwart.integrity.verify import VerifyReport

__all__ = ["Fetch", "RepairResult", "repair_file"]

Fetch = Callable[[int, int], bytes | None]
"""Ranged read from a good copy: (offset, length) -> bytes, or None when it cannot."""


@dataclass(slots=True)
class RepairResult:
    """What a repair did."""

    from_parity: list[int] = field(default_factory=list)
    refetched: list[int] = field(default_factory=list)
    unrepairable: list[int] = field(default_factory=list)
    refetched_bad: list[int] = field(default_factory=list)  # fetched, yet still bad
    parity_rebuilt: list[int] = field(default_factory=list)
    truncated: int = 0
    bytes_read: int = 0
    bytes_refetched: int = 0

    @property
    def complete(self) -> bool:
        return not self.unrepairable


class _Repairer:
    def __init__(self, fd: int, pfd: int | None, manifest: Manifest, result: RepairResult) -> None:
        self.fd = fd
        self.pfd = pfd
        self.m = manifest
        self.result = result

    def read_block(self, index: int) -> bytes:
        offset, length = self.m.block_span(index)
        data = os.pread(self.fd, length, offset)
        self.result.bytes_read += len(data)
        return data

    def good(self, index: int, data: bytes) -> bool:
        return digest_of(self.m.block_algorithm, data) == self.m.blocks[index]

    def write_block(self, index: int, data: bytes) -> None:
        os.pwrite(self.fd, data, self.m.block_span(index)[0])

    def refetch(self, index: int, fetch: Fetch | None) -> None:
        """Fetch block ``index`` from a good copy; record it as re-fetched or unrepairable."""
        offset, length = self.m.block_span(index)
        data = fetch(offset, length) if fetch is not None else None
        if data is not None:
            self.result.bytes_refetched += len(data)
        if data is not None and self.good(index, data):
            self.write_block(index, data)
            self.result.refetched.append(index)
            return
        self.result.unrepairable.append(index)
        if data is not None:
            self.result.refetched_bad.append(index)

    def parity_share(self, stripe: int, p: int) -> bytes | None:
        info = self.m.parity
        if self.pfd is None or info is None:
            return None
        index = stripe * info.parity + p
        data = os.pread(self.pfd, self.m.block_size, index * self.m.block_size)
        self.result.bytes_read += len(data)
        if digest_of(self.m.block_algorithm, data) != info.digests[index]:
            return None
        return data

    def from_parity(self, stripe: int, bad: list[int], codec: StripeCodec) -> list[int]:
        """Rebuild ``bad`` blocks of ``stripe``; return those still bad.

        Blocks already given up on (``result.unrepairable``) are not shares either.
        """
        members = list(self.m.stripe_blocks(stripe))
        first = members[0]
        shares: dict[int, bytes] = {
            i - first: self.read_block(i).ljust(self.m.block_size, b"\0")
            for i in members
            if i not in bad and i not in self.result.unrepairable
        }
        for p in range(codec.parity):
            share = self.parity_share(stripe, p)
            if share is not None:
                shares[codec.data + p] = share
        try:
            rebuilt = codec.decode(shares, len(members))
        except ValueError:
            return bad
        left: list[int] = []
        for i in bad:
            data = rebuilt[i - first][: self.m.block_span(i)[1]]
            if self.good(i, data):
                self.write_block(i, data)
                self.result.from_parity.append(i)
            else:
                left.append(i)
        return left

    def rebuild_parity(self, stripe: int, bad_parity: list[int], codec: StripeCodec) -> None:
        info = self.m.parity
        if self.pfd is None or info is None:
            return
        blocks = [self.read_block(i) for i in self.m.stripe_blocks(stripe)]
        if not all(
            self.good(i, b) for i, b in zip(self.m.stripe_blocks(stripe), blocks, strict=True)
        ):
            return
        parity = codec.encode(blocks)
        size = self.m.block_size
        for index in bad_parity:
            p = index - stripe * info.parity
            os.pwrite(self.pfd, parity[p * size : (p + 1) * size], index * size)
            self.result.parity_rebuilt.append(index)


def repair_file(
    path: Path,
    manifest: Manifest,
    parity_path: Path | None,
    report: VerifyReport,
    *,
    fetch: Fetch | None = None,
) -> RepairResult:
    """Repair what ``report`` found in ``path``; see the module docstring. Blocking."""
    result = RepairResult()
    info = manifest.parity
    codec = StripeCodec(info.data, info.parity, manifest.block_size) if info else None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    pfd: int | None = None
    try:
        if parity_path is not None and info is not None:
            pfd = os.open(parity_path, os.O_RDWR | os.O_CREAT, 0o644)
        fixer = _Repairer(fd, pfd, manifest, result)
        left = sorted(report.bad_blocks)
        if codec is not None and info is not None:
            for stripe in sorted({i // info.data for i in left}):
                bad = [i for i in left if i // info.data == stripe]
                # Re-fetch only as many blocks as the parity cannot cover.
                while bad:
                    bad = fixer.from_parity(stripe, bad, codec)
                    if bad:
                        fixer.refetch(bad.pop(0), fetch)
        else:
            for i in left:
                fixer.refetch(i, fetch)
        size = os.fstat(fd).st_size
        if size != manifest.size:
            result.truncated = max(size - manifest.size, 0)
            os.ftruncate(fd, manifest.size)
        if codec is not None and info is not None and report.bad_parity:
            for stripe in sorted({i // info.parity for i in report.bad_parity}):
                bad_p = [i for i in report.bad_parity if i // info.parity == stripe]
                fixer.rebuild_parity(stripe, bad_p, codec)
            os.ftruncate(pfd, len(info.digests) * manifest.block_size)  # type: ignore[arg-type]
            os.fsync(pfd)  # type: ignore[arg-type]
        os.fsync(fd)
    finally:
        os.close(fd)
        if pfd is not None:
            os.close(pfd)
    return result
