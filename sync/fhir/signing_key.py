"""The workstation's key for SMART Backend Services: signs the client assertion (private_key_jwt).

The EHR is given the public half as a JWK Set (``careops ehr jwks`` prints :func:`jwks_json`); the
private half stays in the cache's ``meta`` table. The cache is encrypted whole-file with SQLCipher,
so the key is encrypted at rest without a second wrapping. Its ``kid`` is the RFC 7638 thumbprint:
stable for a key, and different for every new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from app.cache.models import Meta
from app.cache.store import Cache
from app.errors import KnownError

META_KEY = "ehr.signing_key"
# The two algorithms SMART Backend Services names for client assertions.
ALGORITHMS = ("RS384", "ES384")
DEFAULT_ALG = "ES384"
RSA_BITS = 3072


class SigningKeyError(KnownError):
    remedy = "Create a new EHR signing key and register its public key set (careops ehr jwks) with the EHR."


def _check_alg(alg: str) -> str:
    if alg not in ALGORITHMS:
        raise SigningKeyError(f"Unsupported signing algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}.")
    return alg


@dataclass(frozen=True)
class SigningKey:
    """A private key and the JWS algorithm it signs with (RS384: RSA 3072, ES384: P-384)."""

    alg: str
    jwk: RSAKey | ECKey  # joserfc key: what Authlib's PrivateKeyJWT signs with

    @classmethod
    def generate(cls, alg: str = DEFAULT_ALG) -> SigningKey:
        if _check_alg(alg) == "RS384":
            return cls(alg, RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)))
        return cls(alg, ECKey.import_key(ec.generate_private_key(ec.SECP384R1())))

    @classmethod
    def from_pem(cls, pem: str, alg: str) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise SigningKeyError("The stored EHR signing key cannot be read.") from None
        if _check_alg(alg) == "RS384" and isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048:
            return cls(alg, RSAKey.import_key(private))
        if alg == "ES384" and isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1":
            return cls(alg, ECKey.import_key(private))
        raise SigningKeyError(f"The stored EHR signing key does not fit {alg}.")

    def to_pem(self) -> str:
        """The private key as unencrypted PKCS#8 PEM: only for the encrypted cache."""
        return self.jwk.as_pem(private=True).decode("ascii")

    @property
    def kid(self) -> str:
        return self.jwk.thumbprint()

    def public_jwk(self) -> dict[str, object]:
        return {**self.jwk.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """The public JWK Set to register with the EHR."""
        return {"keys": [self.public_jwk()]}


def load_or_create(cache: Cache, alg: str = DEFAULT_ALG) -> SigningKey:
    """The stored key for ``alg``, created and stored on first use.

    ``meta["ehr.signing_key"]`` holds a JSON object of alg -> PEM, so an RS384 and an ES384 key can
    both be registered (some EHRs accept only one of them). Read and create happen in one write
    transaction, so two processes starting together end up with the same key.
    """
    _check_alg(alg)
    with cache.unit_of_work(user="system", origin="system") as s:
        row = s.get(Meta, META_KEY)
        try:
            stored: dict[str, str] = json.loads(row.value) if row is not None else {}
        except ValueError:
            raise SigningKeyError("The stored EHR signing key cannot be read.") from None
        if not isinstance(stored, dict):
            raise SigningKeyError("The stored EHR signing key cannot be read.")
        if alg in stored:
            return SigningKey.from_pem(stored[alg], alg)
        key = SigningKey.generate(alg)
        stored[alg] = key.to_pem()
        s.merge(Meta(key=META_KEY, value=json.dumps(stored)))
        return key


def jwks_json(cache: Cache, alg: str = DEFAULT_ALG) -> str:
    """What ``careops ehr jwks`` prints: the public JWK Set of the stored key (created if needed)."""
    return json.dumps(load_or_create(cache, alg).jwks(), indent=2)
