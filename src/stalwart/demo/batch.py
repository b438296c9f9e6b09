"""The demonstration pipeline step: a batch program run once per unit.

It does real work (digests a generated product), reports on the bus the way
any batch tool would (``stalwart report`` semantics), and prints the product
path. Exit status 0 on success; 3 on a simulated processing problem (which
leaves no product behind).

Usage: python -m stalwart.demo.batch OUS SITE OUTDIR SIZE_KIB ATTEMPT
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    ous, site, outdir, size_kib, attempt = argv[0], argv[1], Path(argv[2]), int(argv[3]), argv[4]
    outdir.mkdir(parents=True, exist_ok=True)
    # The product's content depends on the unit only, so that a unit processed
    # again yields the same product (the archive refuses changed content); whether
    # an attempt diverges depends on the attempt.
    content = random.Random(f"{ous}/{site}")
    product = outdir / f"{ous.replace('/', '_').replace(':', '')}.{site}.fits"
    digest = hashlib.blake2b()
    with product.open("wb") as out:
        for _ in range(size_kib):
            chunk = content.randbytes(1024)
            digest.update(chunk)
            out.write(chunk)
    if random.Random(f"{ous}/{site}/{attempt}").random() < 0.08:
        product.unlink()
        print(f"calibration diverged for {ous}", file=sys.stderr)
        return 3
    print(f"{product} {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
