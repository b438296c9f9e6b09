"""Sizes shared by the integrity unit tests: small blocks keep them fast."""

BLOCK = 64 * 1024
# 4 data + 2 parity per stripe; 23 blocks and a short tail -> 6 stripes, the last short.
SIZE = BLOCK * 23 + 1234
