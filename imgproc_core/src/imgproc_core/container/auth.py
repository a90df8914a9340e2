"""The composition root of passwords and tokens: bcrypt hashes, and JWTs signed with
``IMGPROC_JWT_SECRET``. Needs the ``auth`` extra."""

from __future__ import annotations

from dependency_injector import containers, providers

from imgproc_core.adapters.auth import BcryptPasswordHasher, JwtTokenIssuer
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


class BcryptJwtAuth(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    password_hasher = providers.Singleton(
        BcryptPasswordHasher, rounds=settings.provided.bcrypt_rounds
    )
    token_issuer = providers.Singleton(
        JwtTokenIssuer,
        secret=settings.provided.jwt_secret,
        clock=clock,
        issuer=settings.provided.jwt_issuer,
        audience=settings.provided.jwt_audience,
        ttl_seconds=settings.provided.access_token_ttl_seconds,
    )
