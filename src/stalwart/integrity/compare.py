"""Whether a destination already holds the source's content (``transfer --checksum``).

As rsync's ``--checksum``, the content decides, not sizes or times: the
destination must verify against its own manifest (so its sidecars are whole
too) and have the source's whole-file digest. The source's digest comes from
its manifest when it has one (what a transfer would be checked against),
else from reading it.
"""

from __future__ import annotations

from stalwart.integrity._pass import Progress, stream_pass
from stalwart.integrity.channels import Channel
from stalwart.integrity.manifest import Manifest
from stalwart.integrity.transfer import source_manifest
from stalwart.integrity.verify import verify_file

__all__ = ["already_there"]


def _digest_of(src: Channel, algorithm: str, progress: Progress | None) -> str:
    with src.open_read() as reader:
        seen = stream_pass(
            reader,
            block_size=4 * 1024 * 1024,
            block_algorithm="xxh3_64",
            file_algorithms=[algorithm],
            progress=progress,
        )
    return seen.digests[algorithm]


def already_there(src: Channel, dst: Channel, progress: Progress | None = None) -> Manifest | None:
    """``dst``'s manifest when ``dst`` verifies and has ``src``'s content, else None.

    Only a local destination is compared (a remote one is transferred). Blocking.
    """
    if dst.local is None or not dst.exists():
        return None
    report = verify_file(dst.local, progress=progress)
    theirs = report.manifest
    if not report.ok or theirs is None:
        return None
    known = source_manifest(src)
    ours = known.digests.get(theirs.digest_algorithm) if known is not None else None
    if ours is None:
        ours = _digest_of(src, theirs.digest_algorithm, progress)
    return theirs if ours == theirs.digest else None
