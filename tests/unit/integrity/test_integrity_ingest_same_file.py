"""Two ingests of one file at once (an operator's and the integrity service's) write
the same temporary parity: they take turns, and the sidecars left agree."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.manifest import Manifest
from stalwart.integrity.verify import verify_file


def test_a_second_ingest_waits_for_the_first_to_put_its_sidecars_in_place(
    make_file: Callable[..., tuple[Path, bytes]], options: IngestOptions
) -> None:
    path, _ = make_file()
    first_waits, first_may_go = threading.Event(), threading.Event()
    second_reached: list[float] = []
    errors: list[BaseException] = []

    def first_accepts(manifest: Manifest) -> None:  # its parity written, not yet in place
        first_waits.set()
        first_may_go.wait(10)

    def ingest(accept: Callable[[Manifest], object]) -> None:
        try:
            ingest_file(path, options, accept=accept)
        except BaseException as exc:
            errors.append(exc)

    # Given a first ingest whose parity is written under the temporary name
    first = threading.Thread(target=ingest, args=(first_accepts,))
    first.start()
    assert first_waits.wait(10)
    # When a second ingest of the same file starts
    second = threading.Thread(target=ingest, args=(lambda m: second_reached.append(1),))
    second.start()
    time.sleep(0.3)
    # Then it has not written under that name: it waits for its turn
    assert not second_reached, "the second ingest ran while the first held the parity"
    first_may_go.set()
    first.join(10)
    second.join(10)
    assert not errors
    assert second_reached
    # And the manifest and parity left behind agree with the file and each other
    report = verify_file(path)
    assert report.ok, report
    assert not list(path.parent.glob("*.tmp"))
