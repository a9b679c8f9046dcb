"""Secure aggregation's building blocks: encoding, shares, sealing, signatures."""

import pytest

from fedrift.core import secagg


def test_encoding_is_exact_to_the_fixed_point_and_sums_wrap_back():
    values = [173.25, -0.5, 0.0, 999.999]
    total = sum(secagg.encode(v) for v in values) % secagg.MODULUS
    assert secagg.decode(total) == pytest.approx(sum(values), abs=4 / secagg.SCALE)
    assert secagg.decode(secagg.encode(1e30)) == secagg.CLIP  # clipped, never wrapped


def test_masked_values_look_uniform_and_masks_cancel_mod_2_62():
    a, b = secagg.RoundSecrets.fresh(), secagg.RoundSecrets.fresh()
    k = secagg.pair_secret(a.mask_private, b.mask_public, "m", "r", "a", "b")
    assert (secagg.pair_mask(k, "a", "b", "r", "c") + secagg.pair_mask(k, "b", "a", "r", "c")) % secagg.MODULUS == 0
    assert secagg.pair_mask(k, "a", "b", "r", "c") != secagg.pair_mask(k, "a", "b", "r2", "c")
    assert secagg.self_mask(a.seed, "r", "c") != secagg.self_mask(b.seed, "r", "c")


def test_any_t_shares_rebuild_both_secrets_and_fewer_do_not():
    s = secagg.RoundSecrets.fresh()
    shares = s.split(n=5, t=3)
    for pick in ([1, 2, 3], [2, 4, 5], [1, 3, 5]):
        back = secagg.RoundSecrets.combine({x: shares[x] for x in pick}, t=3)
        assert back.seed == s.seed and back.mask_public == s.mask_public
    with pytest.raises(ValueError, match="threshold"):
        secagg.combine_seed({x: secagg.seed_share(shares[x]) for x in (1, 2)}, t=3)
    # two shares treated as if the threshold were 2 give a wrong seed, not the secret
    assert secagg.combine_seed({x: secagg.seed_share(shares[x]) for x in (1, 2)}, t=2) != s.seed


def test_a_sealed_share_opens_only_for_its_recipient_and_round():
    a, b, c = (secagg.Identity.generate() for _ in range(3))
    sealed = a.seal(b"x" * 48, b.exchange_key, "a", "b", "r1")
    assert b.open(sealed, a.exchange_key, "b", "a", "r1") == b"x" * 48
    assert c.open(sealed, a.exchange_key, "c", "a", "r1") is None
    assert b.open(sealed, a.exchange_key, "b", "a", "r2") is None
    assert b.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), a.exchange_key, "b", "a", "r1") is None


def test_signatures_bind_the_message_and_the_key():
    a, b = secagg.Identity.generate(), secagg.Identity.generate()
    sig = a.sign(b"msg")
    assert secagg.verify(a.verify_key, sig, b"msg")
    assert not secagg.verify(a.verify_key, sig, b"msh")
    assert not secagg.verify(b.verify_key, sig, b"msg")
    assert not secagg.verify(b"short", sig, b"msg")
    assert secagg.Identity.from_bytes(a.to_bytes()).verify_key == a.verify_key
