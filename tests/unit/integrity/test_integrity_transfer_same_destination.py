"""Two transfers of one file to one destination at once (the demo's delivery run again
after a broker outage, or a scrub restoring a replica a transfer is writing): neither
may rename into place a copy that the other changed after it was verified."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from stalwart.integrity import transfer as transfer_module
from stalwart.integrity.channels import Channel
from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.transfer import TransferOptions, TransferResult, transfer_file
from stalwart.integrity.verify import verify_file


class _Killed(BaseException):
    """The transfer's process dies (SIGKILL: nothing is cleaned up)."""


class _DyingReader:
    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._reads = 0

    def readinto(self, view: memoryview) -> int:
        self._reads += 1
        if self._reads > 1:
            raise _Killed
        return int(self._inner.readinto(view))  # type: ignore[attr-defined]

    def __enter__(self) -> _DyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


class _DyingSource(Channel):
    """A source whose transfer is killed after its first stripe was read."""

    def sibling(self, suffix: str) -> Channel:
        return Channel(self.url + suffix)

    def open_read(self) -> BinaryIO:
        return _DyingReader(super().open_read())  # type: ignore[return-value]


def test_a_transfer_killed_while_writing_spoils_no_verified_copy(
    make_file,
    options: IngestOptions,
    transfer_options: TransferOptions,
    tmp_path: Path,
    monkeypatch,
) -> None:
    # Given an ingested file, and a transfer A of it that has verified its copy and is
    # about to commit it
    path, data = make_file()
    ingest_file(path, options)
    dst = tmp_path / "dst" / path.name
    verified, go = threading.Event(), threading.Event()
    commit = transfer_module._Transfer.commit

    def paused_commit(self: Any, manifest: Any) -> None:
        if not isinstance(self.src, _DyingSource):
            verified.set()
            go.wait(10)
        commit(self, manifest)

    monkeypatch.setattr(transfer_module._Transfer, "commit", paused_commit)
    monkeypatch.setattr(transfer_module._Transfer, "cleanup", lambda self: None)  # killed
    outcome: dict[str, TransferResult | BaseException] = {}

    def run(key: str, src: str | Channel) -> None:
        try:
            outcome[key] = transfer_file(src, str(dst), transfer_options)
        except BaseException as exc:  # the outcome is what the test looks at
            outcome[key] = exc

    a = threading.Thread(target=run, args=("a", str(path)))
    a.start()
    assert verified.wait(10)
    # When a second transfer B of the same file to the same destination starts, and is
    # killed after it has begun writing
    b = threading.Thread(target=run, args=("b", _DyingSource(str(path))))
    b.start()
    b.join(1.0)  # B either runs now (and dies), or waits for A
    go.set()
    a.join(10)
    b.join(10)
    # Then A's commit is the copy A verified: whole, every byte right
    assert isinstance(outcome["a"], TransferResult), outcome["a"]
    assert isinstance(outcome["b"], _Killed)
    assert dst.stat().st_size == len(data), "A committed a copy cut short"
    assert dst.read_bytes() == data and verify_file(dst).ok


@pytest.fixture
def transfer_options(options: IngestOptions) -> TransferOptions:
    return TransferOptions(ingest=options, retries=0, backoff_initial=0.01, backoff_max=0.05)
