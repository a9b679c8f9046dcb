"""Secure aggregation's building blocks (Bonawitz et al. 2017, as SecAgg+ runs it): a host's
signed identity, per-round secrets Shamir-shared with its peers, and integer masks.

Each round a host draws a fresh self-mask seed ``b`` and a fresh X25519 mask key ``s``, splits both
into Shamir shares (threshold ``t``, pycryptodome's GF(2^128) implementation) and sends each peer
its share encrypted (AES-GCM under a key only the two of them can derive). Its input is
fixed-point encoded, clipped, and masked modulo 2^62 with ``PRF(b)`` plus, for each peer, a pairwise
mask ``±PRF(DH(s_u, s_v))`` that the peer adds with the opposite sign. The aggregator learns the
sum only: for a survivor it may reconstruct ``b`` (removing the self-mask), for a dropped host ``s``
(removing its pairwise masks); each host reveals one or the other per peer, never both, so no
individual input is ever unmasked. Masks come from HKDF-SHA256 (a PRF), keys and signatures from
``cryptography``; nothing here is a hand-written primitive.

>>> a, b, c = (RoundSecrets.fresh() for _ in range(3))
>>> pair_ab = pair_secret(a.mask_private, b.mask_public, "m", "r1", "a", "b")
>>> pair_ab == pair_secret(b.mask_private, a.mask_public, "m", "r1", "b", "a")
True
>>> shares = a.split(n=3, t=2)
>>> RoundSecrets.combine({1: shares[1], 3: shares[3]}, t=2).seed == a.seed
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from Cryptodome.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BITS = 62  # masked values live in Z/2^62 (an Avro long holds them)
MODULUS = 1 << BITS
SCALE = 1 << 24  # fixed-point: a value v travels as round(v * SCALE)
CLIP = float(1 << 20)  # |v| is clipped here, so sums of up to 2^16 inputs cannot wrap
SHARE_BYTES = 48  # one recipient's share: 16 bytes of the seed's, 32 of the mask key's (two halves)


def _kdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def encode(value: float) -> int:
    """Fixed-point ``value`` (clipped to ±CLIP) as an element of Z/2^62.

    >>> decode(encode(2.5) + encode(-1.25))
    1.25
    """
    clipped = min(max(value, -CLIP), CLIP)
    return round(clipped * SCALE) % MODULUS


def decode(total: int) -> float:
    """A sum of encoded values back to a float (the upper half of the ring is negative)."""
    t = total % MODULUS
    return (t - MODULUS if t >= MODULUS // 2 else t) / SCALE


def prf(key: bytes, label: str) -> int:
    """A pseudo-random element of Z/2^62 for ``label`` under ``key`` (HKDF-SHA256 as a PRF)."""
    return int.from_bytes(_kdf(key, b"fedrift-mask|" + label.encode(), 8), "big") % MODULUS


def usable_mask_key(public: bytes) -> bool:
    """Whether ``public`` is an X25519 key a Diffie-Hellman exchange accepts (not a low-order
    point, whose shared secret is all zeros and which ``cryptography`` refuses).

    >>> usable_mask_key(RoundSecrets.fresh().mask_public), usable_mask_key(bytes(32))
    (True, False)
    """
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True


def pair_secret(private: X25519PrivateKey, peer_public: bytes, model: str, round_id: str, me: str, peer: str) -> bytes:
    """The secret two hosts share for one round's pairwise masks (X25519 + HKDF, names sorted)."""
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    a, b = sorted((me, peer))
    return _kdf(shared, f"fedrift-pair|{model}|{round_id}|{a}|{b}".encode())


def pair_mask(secret: bytes, me: str, peer: str, round_id: str, config_id: str) -> int:
    """The pairwise mask ``me`` adds for ``peer``: the peer adds its negation."""
    m = prf(secret, f"{round_id}|{config_id}|pair")
    return m if me < peer else (-m) % MODULUS


def self_mask(seed: bytes, round_id: str, config_id: str) -> int:
    return prf(seed, f"{round_id}|{config_id}|self")


class Identity:
    """A host's long-term keys: Ed25519 to sign what it publishes, X25519 to receive its peers'
    encrypted shares. Only the public halves leave the host."""

    def __init__(self, signing: Ed25519PrivateKey, exchange: X25519PrivateKey) -> None:
        self._signing, self._exchange = signing, exchange
        self.verify_key = signing.public_key().public_bytes_raw()
        self.exchange_key = exchange.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Identity:
        if len(raw) != 64:
            raise ValueError(f"an identity is 64 bytes, not {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw[:32]), X25519PrivateKey.from_private_bytes(raw[32:]))

    def to_bytes(self) -> bytes:
        return self._signing.private_bytes_raw() + self._exchange.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message)

    def _channel(self, peer_exchange_key: bytes, sender: str, recipient: str, round_id: str) -> AESGCM:
        shared = self._exchange.exchange(X25519PublicKey.from_public_bytes(peer_exchange_key))
        return AESGCM(_kdf(shared, f"fedrift-share|{round_id}|{sender}|{recipient}".encode()))

    def seal(self, share: bytes, peer_exchange_key: bytes, me: str, peer: str, round_id: str) -> bytes:
        """``share`` encrypted for ``peer`` only (a fresh 12-byte nonce is prepended)."""
        nonce = os.urandom(12)
        return nonce + self._channel(peer_exchange_key, me, peer, round_id).encrypt(nonce, share, round_id.encode())

    def open(self, sealed: bytes, peer_exchange_key: bytes, me: str, peer: str, round_id: str) -> bytes | None:
        """The share ``peer`` sealed for this host, or None when it was not sealed for it."""
        try:
            return self._channel(peer_exchange_key, peer, me, round_id).decrypt(sealed[:12], sealed[12:],
                                                                                 round_id.encode())
        except (InvalidTag, ValueError):
            return None


def verify(verify_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(verify_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass
class RoundSecrets:
    """One host's secrets for one round: the self-mask seed and the pairwise mask key."""

    seed: bytes
    mask_private: X25519PrivateKey

    @classmethod
    def fresh(cls) -> RoundSecrets:
        return cls(os.urandom(16), X25519PrivateKey.generate())

    @property
    def mask_public(self) -> bytes:
        return self.mask_private.public_key().public_bytes_raw()

    def split(self, n: int, t: int) -> dict[int, bytes]:
        """Shares for x = 1..n: any ``t`` of them rebuild both secrets, fewer reveal nothing."""
        key = self.mask_private.private_bytes_raw()
        parts = [Shamir.split(t, n, s, False) for s in (self.seed, key[:16], key[16:])]
        return {x: b"".join(part[x - 1][1] for part in parts) for x in range(1, n + 1)}

    @classmethod
    def combine(cls, shares: dict[int, bytes], t: int) -> RoundSecrets:
        """Both secrets from ``t`` full shares (x -> 48 bytes)."""
        seed = combine_seed({x: s[:16] for x, s in shares.items()}, t)
        return cls(seed, combine_mask_key({x: s[16:] for x, s in shares.items()}, t))


def _combine(shares: dict[int, bytes], t: int) -> bytes:
    if len(shares) < t:
        raise ValueError(f"{len(shares)} share(s), the threshold is {t}")
    return Shamir.combine(sorted(shares.items())[:t], False)


def combine_seed(shares: dict[int, bytes], t: int) -> bytes:
    """A self-mask seed from ``t`` seed shares (x -> 16 bytes)."""
    return _combine(shares, t)


def combine_mask_key(shares: dict[int, bytes], t: int) -> X25519PrivateKey:
    """A pairwise mask key from ``t`` key shares (x -> 32 bytes: two 16-byte halves)."""
    low = _combine({x: s[:16] for x, s in shares.items()}, t)
    high = _combine({x: s[16:] for x, s in shares.items()}, t)
    return X25519PrivateKey.from_private_bytes(low + high)


def seed_share(share: bytes) -> bytes:
    return share[:16]


def key_share(share: bytes) -> bytes:
    return share[16:]
