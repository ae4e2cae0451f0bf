"""The conductor's writes of the compute API's own catalog tables: key pairs and flavors."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ConductorError
from core.models import Flavor, KeyPair
from core.writes import quotas


def create_keypair(s: Session, user_id: str, name: str, public_key: str, fingerprint: str, key_type: str,
                   project_id: str = "") -> dict:
    """A user's key pair, within the user's key_pairs quota; 409 when the user has one of that name."""
    quotas.check_key_pairs(s, project_id, user_id)
    try:
        with s.begin_nested():
            kp = KeyPair(user_id=user_id, name=name, public_key=public_key, fingerprint=fingerprint, type=key_type)
            s.add(kp)
            s.flush()
    except IntegrityError:
        raise ConductorError(409, f"Key pair '{name}' already exists.") from None
    return {"id": kp.id}


def delete_keypair(s: Session, user_id: str, name: str) -> None:
    if s.execute(delete(KeyPair).where(KeyPair.user_id == user_id, KeyPair.name == name)).rowcount == 0:
        raise ConductorError(404, f"Keypair {name} not found for user {user_id}.")


def create_flavor(s: Session, values: dict) -> None:
    if s.scalars(select(Flavor).where((Flavor.flavorid == values["flavorid"]) |
                                      (Flavor.name == values["name"]))).first() is not None:
        raise ConductorError(409, f"Flavor with name {values['name']} or ID {values['flavorid']} already exists.")
    s.add(Flavor(**values))


def delete_flavor(s: Session, flavorid: str) -> None:
    flavor = s.scalars(select(Flavor).where(Flavor.flavorid == flavorid, Flavor.disabled.is_(False))).first()
    if flavor is None:
        raise ConductorError(404, f"Flavor {flavorid} could not be found.")
    # Instances keep a snapshot of their flavor; the row stays (disabled) for the foreign key.
    flavor.disabled = True
    flavor.name = f"{flavor.name}-deleted-{flavor.id}"
    flavor.flavorid = f"{flavor.flavorid}-deleted-{flavor.id}"
