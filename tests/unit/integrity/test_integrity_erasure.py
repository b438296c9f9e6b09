"""Reed-Solomon stripes rebuild from any ``data`` of their shares."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.errors import ConfigError
from stalwart.integrity.erasure import StripeCodec


@settings(max_examples=40, deadline=None)
@given(
    data=st.integers(1, 6),
    parity=st.integers(1, 3),
    members=st.integers(1, 6),
    seed=st.randoms(use_true_random=False),
)
def test_any_erasures_up_to_parity_are_rebuilt(data, parity, members, seed) -> None:
    # Given a (possibly short) stripe with a short last block
    members = min(members, data)
    size = 1000
    blocks = [os.urandom(size) for _ in range(members - 1)] + [os.urandom(size // 3)]
    codec = StripeCodec(data, parity, size)
    parity_blocks = codec.encode(blocks)
    shares = {i: b.ljust(size, b"\0") for i, b in enumerate(blocks)}
    shares.update({data + p: parity_blocks[p * size : (p + 1) * size] for p in range(parity)})
    # When up to `parity` shares are lost
    lost = seed.sample(sorted(shares), min(parity, len(shares)))
    for n in lost:
        del shares[n]
    # Then the data blocks come back exactly
    rebuilt = codec.decode(shares, members)
    assert [r[: len(b)] for r, b in zip(rebuilt, blocks, strict=True)] == blocks


def test_too_many_erasures_is_refused() -> None:
    codec = StripeCodec(3, 1, 100)
    blocks = [os.urandom(100) for _ in range(3)]
    par = codec.encode(blocks)
    with pytest.raises(ValueError, match="needs 3"):
        codec.decode({0: blocks[0], 3: par}, 3)


def test_every_pair_of_losses_in_a_full_stripe() -> None:
    codec = StripeCodec(4, 2, 512)
    blocks = [os.urandom(512) for _ in range(4)]
    par = codec.encode(blocks)
    all_shares = {**dict(enumerate(blocks)), 4: par[:512], 5: par[512:]}
    for lost in itertools.combinations(range(6), 2):
        shares = {k: v for k, v in all_shares.items() if k not in lost}
        assert codec.decode(shares, 4) == blocks


@pytest.mark.parametrize(("data", "parity"), [(0, 2), (10, 0), (200, 60)])
def test_invalid_stripes(data: int, parity: int) -> None:
    with pytest.raises(ConfigError, match="invalid stripe"):
        StripeCodec(data, parity, 1024)


def _need_isa_l(codec: StripeCodec) -> None:
    """Skip without libisal, but fail where the services (and setup.sh's packages) are required."""
    if codec.backend == "isa-l":
        return
    message = "libisal is not installed (Debian libisal2, see scripts/setup.sh)"
    if os.environ.get("STALWART_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@settings(max_examples=30, deadline=None)
@given(
    data=st.integers(1, 12),
    parity=st.integers(1, 4),
    members=st.integers(1, 12),
    size=st.integers(1, 9000),
)
def test_isa_l_parity_is_byte_identical_to_zfec(data, parity, members, size) -> None:
    # Given the ISA-L encoder (when libisal is installed) and the plain zfec one
    fast = StripeCodec(data, parity, size)
    _need_isa_l(fast)
    plain = StripeCodec(data, parity, size, accelerated=False)
    assert plain.backend == "zfec"
    members = min(members, data)
    blocks = [os.urandom(size) for _ in range(members - 1)] + [os.urandom(max(size // 2, 1))]
    # When both encode the same (possibly short) stripe
    # Then the parity is the same bytes, so either reads the other's parity files
    assert fast.encode(blocks) == plain.encode(blocks)


def test_isa_l_rejects_buffers_too_small_for_the_stripe() -> None:
    # Given the ISA-L encoder
    codec = StripeCodec(3, 2, 1024)
    _need_isa_l(codec)
    # When the parity buffer is shorter than parity x block size
    # Then it refuses instead of writing past the buffer
    with pytest.raises(ValueError, match="parity buffer"):
        codec.encode_into([bytes(1024)] * 3, memoryview(bytearray(1024)))
