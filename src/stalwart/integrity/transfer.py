"""Verified transfers: copy, re-read from the destination's disk, repair, or retransmit.

The escalation, cheapest first:

1. stream the file once, hashing every block while it is written;
2. make the copy durable, drop it from the page cache, and verify what is
   on the destination's disk against the manifest;
3. rebuild bad blocks from parity where the stripe allows (nothing moves);
4. re-fetch only the still-bad blocks from the source by byte range;
5. retransmit the whole file, after a backoff with jitter (capped);
6. give up with :class:`~stalwart.errors.IntegrityError`.

The data lands under a ``.part`` name and is renamed into place only once
verified, so a reader never sees an unverified file; transfers to one local
destination take turns (see :func:`_claimed`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from stalwart.backoff import jittered
from stalwart.errors import IntegrityError
from stalwart.events import IntegrityKind
from stalwart.integrity._pass import PassResult, Progress, stream_pass
from stalwart.integrity._readback import ReadBack
from stalwart.integrity._turns import taking_turns
from stalwart.integrity.channels import Channel, open_channel
from stalwart.integrity.ingest import IngestOptions
from stalwart.integrity.manifest import (
    MANIFEST_SUFFIX,
    PARITY_SUFFIX,
    Manifest,
    ManifestDamaged,
    ParityInfo,
    dump_manifest,
    parse_manifest,
    seal_manifest,
)
from stalwart.integrity.repair import RepairResult, repair_file
from stalwart.integrity.verify import VerifyReport, ranges, verify_parity, verify_stream

__all__ = [
    "TransferFailed",
    "TransferFigures",
    "TransferOptions",
    "TransferResult",
    "resolve_destination",
    "source_manifest",
    "transfer_file",
]

_log = logging.getLogger("stalwart.integrity.transfer")


class TransferOptions(BaseModel):
    """Retries and verification of transfers (the ``[integrity]`` table's transfer keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retries: int = Field(default=3, ge=0, le=20)
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    verify_from_disk: bool = True
    ingest: IngestOptions = IngestOptions()


@dataclass(slots=True)
class _Landed:
    """Digests of what was re-read from the destination's disk during the copy."""

    blocks: list[str] | None = None
    parity: list[str] | None = None


def _mismatches(expected: list[str], seen: list[str]) -> list[int]:
    return [i for i, d in enumerate(expected) if i >= len(seen) or seen[i] != d]


class TransferFailed(IntegrityError):
    """Every attempt of a transfer failed verification; ``result`` says what was tried."""

    def __init__(self, message: str, result: TransferResult) -> None:
        super().__init__(message)
        self.result = result


class _SourceDamaged(Exception):
    """Blocks read bad from the source twice (streamed, then by range): the source
    itself is damaged, and sending it again cannot help."""

    def __init__(self, blocks: list[int]) -> None:
        super().__init__(blocks)
        self.blocks = blocks


class TransferFigures(BaseModel):
    """What a transfer cost: the counters every report of one carries."""

    src: str
    dst: str
    outcome: str = "failed"  # an IntegrityKind: transferred, (re)fetched, repaired, failed, ...
    bytes_moved: int = 0
    bytes_refetched: int = 0
    bytes_retransmitted: int = 0
    blocks_repaired: int = 0
    blocks_refetched: int = 0
    attempts: int = 0
    seconds: float = 0.0


class TransferResult(TransferFigures):
    """The outcome of one transfer, with what it cost."""

    manifest: Manifest | None = None
    problems: list[str] = []

    @property
    def size(self) -> int:
        return self.manifest.size if self.manifest else 0


def source_manifest(src: Channel) -> Manifest | None:
    """The manifest beside ``src``, None if it has none; IntegrityError if damaged."""
    side = src.sibling(MANIFEST_SUFFIX)
    if not side.exists():
        return None
    try:
        return parse_manifest(side.read_bytes(), side.url)
    except ManifestDamaged as exc:
        raise IntegrityError(
            f"source manifest of {src.url} is damaged ({exc}); verify the source with "
            "`stalwart integrity verify` and re-ingest it from a good copy"
        ) from None


@contextlib.contextmanager
def _claimed(part: Channel) -> Iterator[None]:
    """Hold the destination's ``.part`` name for this transfer alone, until it ends.

    Every transfer to one destination writes under the same temporary names (the
    ``.part`` copy, its parity, the manifest's ``.tmp``): two at once (the demo's
    delivery run again for a product, a scrub restoring a replica being written)
    take turns on the ``.part`` (see ``_turns``). Remote destinations are not locked.
    """
    if part.local is None:
        yield
        return
    with taking_turns(part.local):
        yield


class _Transfer:
    def __init__(
        self, src: Channel, dst: Channel, opts: TransferOptions, progress: Progress | None
    ) -> None:
        self.src = src
        self.dst = dst
        self.opts = opts
        self.progress = progress
        self.part = dst.sibling(".part")
        self.parity_part = dst.sibling(PARITY_SUFFIX + ".part")
        self.result = TransferResult(src=src.url, dst=dst.url)
        self.streamed = 0  # bytes of the current attempt reported to ``progress``

    def copy(self, known: Manifest | None) -> tuple[Manifest, list[int], _Landed]:
        """Stream src -> part once; return the manifest, blocks bad in transit, and the
        digests of what landed on a local disk (re-read while copying)."""
        ingest = self.opts.ingest if known else self._fitted()
        codec = ingest.codec() if known is None else None
        block_size = known.block_size if known else ingest.block_size
        algorithm = known.block_algorithm if known else ingest.block_algorithm
        landed = _Landed()
        with (
            self.src.open_read() as reader,
            self.part.open_write() as out,
            contextlib.ExitStack() as stack,
        ):
            sink, data_back = self._writer(self.part, out, block_size, algorithm, stack, reader)
            parity_sink, parity_back, parity_out = None, None, None
            if codec is not None:
                parity_out = stack.enter_context(self.parity_part.open_write())
                parity_sink, parity_back = self._writer(
                    self.parity_part, parity_out, block_size, algorithm, stack
                )
            seen = stream_pass(
                reader,
                block_size=block_size,
                block_algorithm=algorithm,
                file_algorithms=[known.digest_algorithm] if known else ingest.algorithms(),
                codec=codec,
                stripe_blocks=known.parity.data if known and known.parity else 10,
                sink=sink,
                parity_sink=parity_sink,
                progress=self.progress,
                workers=ingest.workers,
            )
            self.part.settle(out)
            landed.blocks = data_back.digests() if data_back is not None else None
            if parity_out is not None:
                self.parity_part.settle(parity_out)
                landed.parity = parity_back.digests() if parity_back is not None else None
        self.result.bytes_moved += seen.size
        self.streamed = seen.size
        if known is None:
            return self._manifest_from(seen, ingest), [], landed
        bad = [
            i for i, d in enumerate(known.blocks) if i >= len(seen.blocks) or seen.blocks[i] != d
        ]
        if not bad and seen.digests[known.digest_algorithm] != known.digest:
            bad = list(range(known.block_count))  # blocks agree, file does not: trust nothing
        return known, bad, landed

    def _writer(
        self,
        channel: Channel,
        out: BinaryIO,
        block_size: int,
        algorithm: str,
        stack: contextlib.ExitStack,
        source: BinaryIO | None = None,
    ) -> tuple[Callable[[memoryview], object], ReadBack | None]:
        """Where a stream is written: through a disk read-back for local files, else as is.

        ``source`` is the stream being copied, for an in-kernel copy between local files.
        """
        if channel.local is None:
            return out.write, None
        back = ReadBack(
            out, block_size, algorithm, from_disk=self.opts.verify_from_disk, source=source
        )
        return stack.enter_context(back).write, back

    def _fitted(self) -> IngestOptions:
        """Ingest options for a source without a manifest: parity proportional to it
        when its size is known (see IngestOptions.fitted), as configured otherwise."""
        try:
            return self.opts.ingest.fitted(self.src.size())
        except (OSError, ValueError, TypeError, NotImplementedError):
            return self.opts.ingest

    def _manifest_from(self, seen: PassResult, ingest: IngestOptions) -> Manifest:
        codec = ingest.codec()
        parity = None
        if codec is not None:
            parity = ParityInfo(
                data=codec.data,
                parity=codec.parity,
                file=self.dst.name + PARITY_SUFFIX,
                digests=seen.parity,
            )
        return Manifest(
            name=self.src.name,
            size=seen.size,
            digest_algorithm=ingest.algorithms()[0],
            digests=seen.digests,
            block_size=ingest.block_size,
            block_algorithm=ingest.block_algorithm,
            blocks=seen.blocks,
            parity=parity,
        )

    def copy_parity(self, manifest: Manifest) -> tuple[list[str] | None, int]:
        """Copy the source's parity file; (digests of what landed, bytes moved)."""
        if manifest.parity is None:
            return None, 0
        src_parity = self.src.sibling(PARITY_SUFFIX)
        if not src_parity.exists():
            _log.warning("source has no parity file src=%s; repair will re-fetch", self.src.url)
            self.parity_part.remove()
            return None, 0
        with (
            src_parity.open_read() as reader,
            self.parity_part.open_write() as out,
            contextlib.ExitStack() as stack,
        ):
            size, algorithm = manifest.block_size, manifest.block_algorithm
            sink, back = self._writer(self.parity_part, out, size, algorithm, stack, reader)
            seen = stream_pass(
                reader,
                block_size=size,
                block_algorithm=algorithm,
                file_algorithms=[],
                stripe_blocks=manifest.parity.parity * 4,
                sink=sink,
            )
            self.parity_part.settle(out)
            return (back.digests() if back is not None else None), seen.size

    def check(
        self, manifest: Manifest, transit_bad: list[int], landed: _Landed | None = None
    ) -> VerifyReport:
        """Verify what is on the destination's disk (and the parity copy), from the
        digests re-read while copying when there are some, else by reading it again."""
        report = VerifyReport(path=self.dst.url, manifest=manifest)
        if landed is not None and landed.blocks is not None:
            report.bad_blocks = _mismatches(manifest.blocks, landed.blocks)
            report.digest_ok = not report.bad_blocks  # the stream checked the file digest
        else:
            with self.part.open_read() as reader:
                verify_stream(reader, manifest, report)
        report.size = self.part.size()
        report.extra_bytes = max(report.size - manifest.size, 0)
        report.bad_blocks = sorted(set(report.bad_blocks) | set(transit_bad))
        if manifest.parity is not None and landed is not None and landed.parity is not None:
            report.bad_parity = _mismatches(manifest.parity.digests, landed.parity)
        elif manifest.parity is not None and self.parity_part.local is not None:
            verify_parity(self.parity_part.local, manifest, report)
        return report

    def repair(self, manifest: Manifest, report: VerifyReport) -> RepairResult | None:
        if self.part.local is None:
            return None  # objects in remote stores are not patched in place
        fetch: Callable[[int, int], bytes | None] | None = None
        if self.src.supports_ranges:
            fetch = self._fetch
        parity = self.parity_part.local if manifest.parity is not None else None
        fixed = repair_file(self.part.local, manifest, parity, report, fetch=fetch)
        self.result.blocks_repaired += len(fixed.from_parity)
        self.result.blocks_refetched += len(fixed.refetched)
        self.result.bytes_refetched += fixed.bytes_refetched
        self.result.bytes_moved += fixed.bytes_refetched
        return fixed

    def _fetch(self, offset: int, length: int) -> bytes | None:
        for attempt in range(1, 4):
            try:
                return self.src.read_range(offset, length)
            except OSError as exc:
                _log.warning(
                    "ranged read failed src=%s offset=%d attempt=%d error=%s",
                    self.src.url,
                    offset,
                    attempt,
                    exc,
                )
                time.sleep(self._backoff(attempt))
        return None

    def _backoff(self, attempt: int) -> float:
        return jittered(attempt, self.opts.backoff_initial, self.opts.backoff_max)

    def commit(self, manifest: Manifest) -> None:
        if manifest.parity is not None:
            # The parity file is named after the destination, which may differ.
            parity = manifest.parity.model_copy(update={"file": self.dst.name + PARITY_SUFFIX})
            manifest = manifest.model_copy(update={"parity": parity})
        manifest = seal_manifest(manifest)
        self.result.manifest = manifest
        self.dst.sibling(MANIFEST_SUFFIX).write_bytes(dump_manifest(manifest))
        if manifest.parity is not None and self.parity_part.exists():
            self.parity_part.rename(self.dst.sibling(PARITY_SUFFIX))
        self.part.rename(self.dst)

    def cleanup(self) -> None:
        for channel in (self.part, self.parity_part):
            try:
                channel.remove()
            except OSError as exc:
                _log.warning("cannot remove temporary file url=%s error=%s", channel.url, exc)

    def attempt(self, known: Manifest | None) -> Manifest | None:
        """One copy with its checks and repairs: the manifest if it verified, else None."""
        if known is None:
            manifest, transit_bad, landed = self.copy(known)
        else:  # the parity file travels alongside the data
            with ThreadPoolExecutor(1, thread_name_prefix="stw-parity") as pool:
                parity_job = pool.submit(self.copy_parity, known)
                manifest, transit_bad, landed = self.copy(known)
                landed.parity, moved = parity_job.result()
            self.result.bytes_moved += moved
        self.result.manifest = manifest
        report = self.check(manifest, transit_bad, landed)
        if report.ok:
            return manifest
        self.result.problems.append("; ".join(report.problems()))
        fixed = self.repair(manifest, report)
        if fixed is None:
            return None
        twice = sorted(set(fixed.refetched_bad) & set(transit_bad))
        if twice and self.src.local is not None:  # a disk reads the same bytes again
            raise _SourceDamaged(twice)
        again = self.check(manifest, [])
        if not again.ok:
            self.result.problems.append("after repair: " + "; ".join(again.problems()))
            return None
        return manifest

    def run(self) -> TransferResult:
        started = time.monotonic()
        known = source_manifest(self.src)
        if known is not None:
            self.result.bytes_moved += len(dump_manifest(known))
        claim = contextlib.ExitStack()
        claimed = False
        try:
            claim.enter_context(_claimed(self.part))
            claimed = True
            for attempt in range(1, self.opts.retries + 2):
                self.result.attempts = attempt
                if attempt > 1:
                    time.sleep(self._backoff(attempt - 1))
                    self.result.bytes_retransmitted += self.result.size
                    if self.progress is not None:  # the bar counts this attempt afresh
                        self.progress(-self.streamed)
                verified = self.attempt(known)
                if verified is not None:
                    self.commit(verified)
                    self.result.outcome = self._outcome()
                    return self.result
                _log.warning(
                    "transfer not verified src=%s dst=%s attempt=%d problems=%s",
                    self.src.url,
                    self.dst.url,
                    attempt,
                    self.result.problems[-1:],
                )
            self.result.outcome = "failed"
            raise TransferFailed(
                f"transfer {self.src.url} -> {self.dst.url} failed verification after "
                f"{self.result.attempts} attempt(s): {self.result.problems[-1]}; check the "
                "source with `stalwart integrity verify` and the destination disk",
                self.result,
            )
        except _SourceDamaged as bad:
            self.result.outcome = "failed"
            raise TransferFailed(
                f"source {self.src.url} is damaged: block(s) {ranges(bad.blocks)} differ from "
                "its manifest beyond its parity, on every read; not retransmitted. Repair the "
                f"source first (`stalwart integrity verify {self.src.url} --repair`) or "
                "transfer from another replica (`stalwart integrity catalog replicas`)",
                self.result,
            ) from None
        except OSError as exc:
            raise TransferFailed(
                f"transfer {self.src.url} -> {self.dst.url} failed: {exc}; check the paths, "
                "permissions and free space",
                self.result,
            ) from exc
        finally:
            self.result.seconds = time.monotonic() - started
            if self.result.outcome == "failed" and claimed:  # never another transfer's
                self.cleanup()
            claim.close()

    def _outcome(self) -> str:
        """The ``sys.integrity`` event this transfer ends with (the costliest remedy)."""
        if self.result.attempts > 1:
            return IntegrityKind.RETRANSMITTED.value
        if self.result.blocks_refetched:
            return IntegrityKind.REFETCHED.value
        if self.result.blocks_repaired or self.result.problems:
            return IntegrityKind.REPAIRED.value
        return IntegrityKind.TRANSFERRED.value


def resolve_destination(src: str | Channel, dst: str) -> str:
    """``dst``, or ``dst/<source name>`` when it names a directory (or ends with ``/``)."""
    if dst.endswith("/") or open_channel(dst).local_dir():
        return dst.rstrip("/") + "/" + open_channel(src).name
    return dst


def transfer_file(
    src: str | Channel,
    dst: str | Channel,
    options: TransferOptions | None = None,
    *,
    progress: Progress | None = None,
) -> TransferResult:
    """Copy ``src`` to ``dst`` with verification and repair; see the module docstring.

    ``dst`` naming an existing directory (or ending in ``/``) receives the
    file under its source name. Raises IntegrityError when every attempt
    failed: :class:`TransferFailed`, carrying the result. Blocking.
    """
    source = open_channel(src)
    target = open_channel(resolve_destination(source, dst) if isinstance(dst, str) else dst)
    if source.local_dir():
        raise IntegrityError(f"source {source.url} is a directory; transfer its files one by one")
    if not source.exists():
        raise IntegrityError(f"source {source.url} does not exist; check the path or URL")
    if source.url == target.url:
        raise IntegrityError(f"source and destination are both {source.url}; pick another DST")
    return _Transfer(source, target, options or TransferOptions(), progress).run()
