"""``addSecurityGroup``/``removeSecurityGroup`` as Nova answers them on a Neutron cloud without the
security-group extension (Stratus's Networking API does not list it; docs/networking.md): the group is not
found (404), ``default`` included. The view has checked the instance and the action's rule already."""
from __future__ import annotations

from app.compute.schemas import SecurityGroupArgument
from app.context import current
from core.errors import bad_request, not_found


def _group_name(args: object) -> str:
    """Nova's parse of ``{"addSecurityGroup": {"name": ...}}``."""
    if not isinstance(args, dict):
        raise bad_request("Missing parameter dict")
    if "name" not in args:
        raise bad_request("Security group not specified")
    name = args["name"]
    if not isinstance(name, str) or not name.strip():
        raise bad_request("Security group name cannot be empty")
    return name.strip()


def add_security_group(server_id: str, args: object) -> None:
    name = _group_name(args)
    raise not_found(f"Security group {name} is not found for project {current().project_id}")


def remove_security_group(server_id: str, args: object) -> None:
    name = _group_name(args)
    raise not_found(f"Security group {name} is not found for project {current().project_id}")


# The OpenAPI document shows this argument (app/compute/actions.py ARGUMENT_SCHEMAS); the handlers parse it as Nova.
add_security_group.argument_schema = SecurityGroupArgument  # type: ignore[attr-defined]
remove_security_group.argument_schema = SecurityGroupArgument  # type: ignore[attr-defined]
