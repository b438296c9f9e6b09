"""Integrity against named peers on the same files, in one run.

- ingest (whole-file BLAKE3 + per-block digests + RS parity 10+2) vs
  ``par2 create -r20`` (the same 20 % redundancy, same 4 MiB blocks) and vs
  ``b3sum`` alone;
- verify vs ``b3sum``;
- transfer with verification on the destination's disk vs ``cp`` (and
  ``cp`` followed by ``sync``, which makes the copy as durable as ours);
- repair of one damaged block of the file vs ``par2 repair``, both timed
  from the damaged file: ours is the verify that finds the bad block and
  the repair, as ``par2 repair`` scans and then repairs.

Files live in a temporary directory under /tmp (1 GiB by default). Ours and
``b3sum``/``cp`` are medians of ``--runs`` runs; par2 runs once (it is slow).
The input is on disk and in the page cache before any timer starts, for
every contender alike.

Run: ``.venv/bin/python -m benchmarks.bench_integrity [--size-mib 1024] [--runs 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.repair import repair_file
from stalwart.integrity.transfer import transfer_file
from stalwart.integrity.verify import verify_file

MIB = 1024 * 1024
BLOCK = 4 * MIB


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _medians(
    runs: int,
    actions: dict[str, Callable[[], object]],
    before: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Median time of each action; the actions take turns so that a change in the
    machine's load during the run affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(runs):
        for name, action in actions.items():
            if before is not None:
                before()
            times[name].append(_timed(action))
    return {name: statistics.median(t) for name, t in times.items()}


def _sh(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(args, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _make(path: Path, size: int) -> None:
    """The input, on disk before any timer starts: its write-back would otherwise
    fall on whichever contender runs first (ours), slowing the parity's fsync."""
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = min(left, 64 * MIB)
            out.write(os.urandom(chunk))
            left -= chunk
        out.flush()
        os.fsync(out.fileno())


def _warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(64 * MIB):
            pass


def _damage(path: Path, block: int) -> None:
    with open(path, "r+b") as f:
        f.seek(block * BLOCK + 12345)
        f.write(b"\x00" * 4096)


class _Report:
    def __init__(self, size: int) -> None:
        self.size = size
        self.lines: list[str] = []

    def rate(self, seconds: float) -> str:
        return f"{self.size / seconds / 1e9:.2f} GB/s"

    def row(self, task: str, ours: float, peer_name: str, peer: float, note: str = "") -> None:
        line = (
            f"{task:<34} stalwart {ours:7.3f} s ({self.rate(ours)})  {peer_name:<18} "
            f"{peer:7.3f} s ({self.rate(peer)})  ratio {peer / ours:5.2f}x {note}"
        )
        self.lines.append(line)
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-par2", action="store_true", help="Leave par2 out (slow).")
    args = parser.parse_args()
    for tool in ("b3sum", "par2", "cp"):
        if shutil.which(tool) is None and not (tool == "par2" and args.skip_par2):
            raise SystemExit(
                f"{tool} is needed: apt-get install {'b3sum' if tool == 'b3sum' else 'par2'}"
            )
    size = args.size_mib * MIB
    report = _Report(size)
    with tempfile.TemporaryDirectory(prefix="stw-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        _make(data, size)
        _warm(data)
        opts = IngestOptions(block_size=BLOCK, data_blocks=10, parity_blocks=2)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"file {size / MIB:.0f} MiB, blocks 4 MiB, stripes 10+2, cpus {os.cpu_count()}, "
            f"load {load}, runs {args.runs}; ratio = peer time / stalwart time",
            flush=True,
        )

        first = _medians(
            args.runs,
            {
                "ingest": lambda: ingest_file(data, opts),
                "b3sum": lambda: _sh("b3sum", str(data)),
                "verify": lambda: verify_file(data, check_parity=False),
                "verify_all": lambda: verify_file(data),
            },
        )
        ours, b3 = first["ingest"], first["b3sum"]
        report.row("ingest (digest+blocks+parity)", ours, "b3sum (digest only)", b3)
        par2_dir = root / "par2"
        par2_dir.mkdir()
        os.link(data, par2_dir / "data.bin")
        if not args.skip_par2:
            par2 = _timed(
                lambda: _sh(
                    "par2",
                    "create",
                    "-q",
                    "-s4194304",
                    "-r20",
                    "-n1",
                    "data.bin.par2",
                    "data.bin",
                    cwd=par2_dir,
                )
            )
            report.row("ingest vs par2 create -r20", ours, "par2 create", par2)

        report.row("verify data", first["verify"], "b3sum", b3)
        report.row("verify data + parity", first["verify_all"], "b3sum", b3)

        out = root / "out"
        out.mkdir()

        def clean() -> None:
            for p in out.iterdir():
                p.unlink()

        c_bin = out / "c.bin"
        copies = _medians(
            args.runs,
            {
                "transfer": lambda: transfer_file(str(data), str(out / "t.bin")),
                "cp": lambda: _sh("cp", str(data), str(c_bin)),
                "cp_sync": lambda: _sh("sh", "-c", f"cp {data} {c_bin} && sync {c_bin}"),
                "cp_check": lambda: _sh(
                    "sh", "-c", f"cp {data} {c_bin} && sync {c_bin} && b3sum {c_bin}"
                ),
            },
            clean,
        )
        moved = copies["transfer"]
        cp, cp_sync, cp_check = copies["cp"], copies["cp_sync"], copies["cp_check"]
        report.row("transfer + verify on disk", moved, "cp", cp)
        report.row("transfer + verify on disk", moved, "cp && sync", cp_sync)
        report.row("transfer + verify on disk", moved, "cp, sync, b3sum", cp_check)

        block = (size // BLOCK) // 2
        times, read = [], 0
        for _ in range(args.runs):
            _damage(data, block)
            # From the damaged file, as par2 repair: find the bad block, then repair it.
            start = time.perf_counter()
            found = verify_file(data)
            if found.bad_blocks != [block] or found.manifest is None:
                raise SystemExit(f"unexpected damage report: {found.problems()}")
            fixed = repair_file(data, found.manifest, Path(str(data) + ".stw-parity"), found)
            times.append(time.perf_counter() - start)
            read = fixed.bytes_read
            if fixed.from_parity != [block] or not verify_file(data).ok:
                raise SystemExit("repair did not restore the block")
        fix = statistics.median(times)
        if not args.skip_par2:
            (par2_dir / "data.bin").unlink()
            shutil.copyfile(data, par2_dir / "data.bin")
            _damage(par2_dir / "data.bin", block)
            par2_fix = _timed(lambda: _sh("par2", "repair", "-q", "data.bin.par2", cwd=par2_dir))
            report.row(
                "verify + repair 1 block",
                fix,
                "par2 repair",
                par2_fix,
                f"(repair read {read / MIB:.0f} MiB of {size / MIB:.0f})",
            )
        else:
            print(f"verify + repair 1 block: {fix:.3f} s, repair read {read / MIB:.0f} MiB")
    print("\nsummary")
    for line in report.lines:
        print(" ", line)


if __name__ == "__main__":
    main()
