"""The demonstration pipeline step: a batch program run once per unit.

It does real work (digests a generated product), which the pipeline service
reports on the bus the way any batch tool would (``stalwart report``
semantics). ``stalwart demo batch`` runs it: exit status 0 with the product's
path and digest, 3 on a simulated processing problem (which leaves no product
behind).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import NamedTuple

__all__ = ["Product", "process"]


class Product(NamedTuple):
    """The product written for a unit, and its BLAKE2b digest (hex)."""

    path: Path
    digest: str


def process(ous: str, site: str, outdir: Path, size_kib: int, attempt: int) -> Product | None:
    """Write the unit's product; None (and no product) when the attempt diverges."""
    outdir.mkdir(parents=True, exist_ok=True)
    # The product's content depends on the unit only, so that a unit processed
    # again yields the same product (the archive refuses changed content). About
    # one first attempt in twelve diverges, and a rerun converges: the problem is
    # transient, as the retry it shows is for. (When every attempt could diverge,
    # a unit now and then diverged four times and was dead-lettered: lost by the
    # demo's design, which a fault campaign counted as a unit not delivered.)
    content = random.Random(f"{ous}/{site}")
    product = outdir / f"{ous.replace('/', '_').replace(':', '')}.{site}.fits"
    digest = hashlib.blake2b()
    with product.open("wb") as out:
        for _ in range(size_kib):
            chunk = content.randbytes(1024)
            digest.update(chunk)
            out.write(chunk)
    if attempt == 1 and random.Random(f"{ous}/{site}").random() < 0.08:
        product.unlink()
        return None
    return Product(product, digest.hexdigest())
