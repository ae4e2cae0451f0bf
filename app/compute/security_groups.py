"""Security groups as Nova answers on a Neutron cloud without the security-group extension (Stratus's Networking
API does not list it; docs/networking.md): a server belongs to no group (``GET /servers/{id}/os-security-groups``
is an empty list, server bodies have no ``security_groups``), ``addSecurityGroup``/``removeSecurityGroup`` find no
group (404, security_group_actions.py), a create naming a group other than ``default`` is a 400
(boot_request.check_security_groups), and Nova's ``/os-security-groups`` proxy is absent (404)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.compute.instances import instance_for_subresource
from app.policy import enforce

bp = Blueprint("security_groups", __name__)


@bp.get("/servers/<server_id>/os-security-groups")
@enforce("project_reader_api")
def list_server_security_groups(server_id: str):
    instance_for_subresource(server_id)
    return jsonify({"security_groups": []})
