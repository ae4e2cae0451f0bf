"""The authorization matrix: every route of the URL map × nine callers, expected outcomes derived from the
policy defaults the views declare (``@enforce(level)``, named rules in ``app.policy.DEFAULTS``), plus a short
table of views whose rule is checked inside the view against the resource.

Callers: the admin, project A's member and reader, project B's member, and five that must get 401 (no token,
an expired one, a revoked one, a disabled user's, a disabled project's). A refused caller gets 401 (invalid
token), 403 (its own project, or an admin API) or the reference service's answer for another project's resource
(Nova and Glance hide it: 404); an allowed one anything but 401/403/5xx. A refused write changes no row of any
table. The world (project A's server, image, key pair...) is restored from a snapshot before each route.

To cover a new API (e.g. Networking): one ``FAMILIES`` line per blueprint (``NEUTRON`` is ready); its views
declare their level with ``@enforce``; views that check inside against the resource get an ``INSIDE`` line; ids
of A's resources for its path arguments go in ``_ids`` (else "x": every caller's answer is then a 404 or 403).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.unit.conftest import PUBLIC_URL, Cred, bootstrap_admin, issue, user_maker
from tests.unit.inprocess import COMPUTE, build_world, patch_conductor
from tests.unit.test_project_isolation import BODIES, LAST_VERSION, OWNED, PATCH_TYPE


@dataclasses.dataclass(frozen=True)
class Service:
    """A reference service: how it refuses another project's resource, and the headers its clients send."""
    name: str
    other_refusal: frozenset[int]
    headers: tuple[tuple[str, str], ...] = ()
    owned_args: frozenset[str] = frozenset()  # path arguments naming a project's resource, beyond OWNED


NOVA = Service("nova", frozenset({403, 404}), tuple(COMPUTE.items()))  # 404: project_only lookups hide it
KEYSTONE = Service("keystone", frozenset({403}))
GLANCE = Service("glance", frozenset({403, 404}))  # 404: another project's private image is invisible
PLACEMENT = Service("placement", frozenset({403}), (("OpenStack-API-Version", "placement 1.39"),))
# Networking: 404 for another project's port (invisible to it); give ids of A's resources in _ids. Stratus's one
# network and its subnet are shared, owned by no project of the world (the admin's): not owned arguments.
NEUTRON = Service("neutron", frozenset({403, 404}), owned_args=frozenset({
    "port_id", "router_id", "floatingip_id", "security_group_id", "security_group_rule_id"}))
PUBLIC = Service("public", frozenset())

# Blueprint -> reference service. A route whose blueprint is not here fails the matrix (one line per new API).
FAMILIES: dict[str, Service] = {
    **{bp: PUBLIC for bp in ("versions", "identity_versions", "openapi", "placement_root", "static")},
    **{f"identity_{bp}": KEYSTONE for bp in ("tokens", "domains", "projects", "users", "roles", "groups",
                                             "catalog", "application_credentials", "system")},
    **{bp: GLANCE for bp in ("image", "image_members", "image_actions", "image_import", "image_metadefs")},
    **{f"placement_{bp}": PLACEMENT for bp in ("providers", "inventories", "usages", "allocations",
                                               "allocation_candidates", "resource_classes", "traits",
                                               "aggregates")},
    **{f"network_{bp}": NEUTRON for bp in ("root", "networks", "subnets", "ports", "quotas")},
    **{bp: NOVA for bp in ("servers", "flavors", "keypairs", "limits", "availability_zones", "networks", "services",
                           "hypervisors", "instance_actions", "quotas", "server_groups", "aggregates",
                           "flavor_access", "usage", "migrations", "consoles", "server_diagnostics",
                           "server_metadata", "server_tags", "server_password", "usage_audit_log", "hosts",
                           "extensions", "images", "volume_attachments", "security_groups")},
}

# Views whose decorator admits more callers than the rule they check inside against the resource (Keystone's
# "self or admin" reads, Glance's owner rules): endpoint -> the level that really applies. Nothing else here.
_SELF_OR_ADMIN = "admin_or_owner"  # Keystone's "admin or the user itself" (the user: A's member)
INSIDE: dict[str, str] = {
    # Keystone: identity:validate_token / revoke_token are admin or the token's subject (A's member's token)
    "identity_tokens.validate_token": _SELF_OR_ADMIN, "identity_tokens.revoke_token": _SELF_OR_ADMIN,
    "identity_projects.show_project": "project_reader_api",  # identity:get_project: admin or scoped to it
    "identity_roles.list_role_assignments": "system_reader_api",  # without ?user.id= of oneself
    **{e: _SELF_OR_ADMIN for e in ("identity_users.show_user", "identity_users.user_projects",
                                   "identity_groups.list_groups_for_user", "identity_roles.list_user_project_roles",
                                   "identity_roles.check_role",
                                   "identity_system.list_system_roles", "identity_system.check_system_role")},
    "identity_users.change_password": "self",  # only the user itself, with its original password
    # identity:create_application_credential: the owner only, not an admin
    "identity_application_credentials.create_application_credential": "self",
    # Glance: modify_image, delete_image, upload_image, add_image (import, stage), deactivate, reactivate, tags:
    # the owner's members or an admin; Nova's image-metadata proxy ('@') meets Glance's modify_image behind it
    **{e: "project_member_api" for e in (
        "image.update_image", "image.delete_image", "image.upload_image", "image_import.import_image",
        "image_import.stage", "image_actions.deactivate", "image_actions.reactivate", "image_actions.add_tag",
        "image_actions.delete_tag", "images.update_metadata", "images.replace_metadata",
        "images.set_metadata_item", "images.delete_metadata_item", "image_members.add_member",
        "image_members.delete_member")},
    "image_members.update_member": "member_project",  # Glance: only the member project accepts a share
}
# Views whose target is project A's (or A's member's) although their path names nothing owned.
TARGETS_A = {"identity_tokens.validate_token", "identity_tokens.revoke_token"}  # X-Subject-Token: A's member's
# Valid bodies where project isolation's do not suffice (Nova validates a body before its policy check).
MATRIX_BODIES = {
    **BODIES,
    "server_metadata.create": [{"metadata": {"k": "v"}}], "server_metadata.update_all": [{"metadata": {"k": "v"}}],
    "server_metadata.update_key": [{"meta": {"x": "v"}}], "server_tags.update_all": [{"tags": ["t"]}],
    "image_members.add_member": [{"member": "new-project"}],
}

VALID = ("admin", "member", "reader", "other")
INVALID = ("no_token", "expired", "revoked", "disabled_user", "disabled_project")

# Who passes each level when the target is project A's resource (or A's member user). A route whose path names
# nothing owned targets the caller's own project or user: then B's member passes wherever A's member does.
PASSES: dict[str, frozenset[str]] = {
    "admin_api": frozenset({"admin"}),
    "admin_or_service": frozenset({"admin"}),  # nobody here holds the service role
    "system_reader_api": frozenset({"admin"}),  # nobody here holds a system-scoped token
    "project_manager_api": frozenset({"admin"}),
    "project_member_api": frozenset({"admin", "member"}),
    "project_reader_api": frozenset({"admin", "member", "reader"}),
    "admin_or_owner": frozenset({"admin", "member"}),
    "authenticated": frozenset(VALID),
    "self": frozenset({"member"}),  # the user itself (A's member), not even an admin
    "member_project": frozenset({"admin", "other"}),  # the project an image is shared with (B)
}
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _passes(level: str, owned: bool) -> frozenset[str]:
    passes = PASSES[level]
    if not owned and "member" in passes:
        passes |= {"other"} | ({"reader"} if level == "admin_or_owner" else set())
    return passes


@dataclasses.dataclass(frozen=True)
class Case:
    rule: str
    method: str
    endpoint: str

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"


def _methods(rule) -> set[str]:
    """The rule's methods; HEAD only where it is not GET's automatic twin (Keystone's HEAD-only checks)."""
    return rule.methods - {"OPTIONS"} - ({"HEAD"} if "GET" in rule.methods else set())


def _cases(app) -> list[Case]:
    return sorted((Case(r.rule, m, r.endpoint) for r in app.url_map.iter_rules() for m in _methods(r)),
                  key=lambda c: (c.rule, c.method))


def _levels(app, endpoint: str, body) -> tuple[str | None, str]:
    """(the level that decides ``endpoint`` for ``body`` or None for a public view, or None and why not)."""
    from app.policy import level_of, view_rules
    from app.policy_names import ACTION_RULES

    view = app.view_functions[endpoint]
    if getattr(view, "policy_public", False) or endpoint == "static":
        return "public", ""
    if endpoint in INSIDE:
        return INSIDE[endpoint], ""
    if endpoint == "servers.server_action":
        return ACTION_RULES[next(iter(body))][1], ""
    level = getattr(view, "policy_level", None)
    levels = {level} if level else {level_of(n) for n in view_rules(endpoint, view)}
    if len(levels) == 1:
        return levels.pop(), ""
    return None, (f"its view declares {sorted(levels) or 'no policy level'}: decorate it with @enforce(level) "
                  f"or add it to INSIDE")


def coverage_problems(app) -> list[str]:
    """Every route of the URL map the matrix cannot judge, with what it needs."""
    problems = []
    for case in _cases(app):
        blueprint = case.endpoint.split(".")[0]
        if blueprint not in FAMILIES:
            problems.append(f"{case.id} ({case.endpoint}): no matrix entry: add blueprint {blueprint!r} to "
                            f"FAMILIES in tests/unit/test_authz_matrix.py")
            continue
        for body in MATRIX_BODIES.get(case.endpoint, [{}]):
            level, why = _levels(app, case.endpoint, body)
            if level is None:
                problems.append(f"{case.id} ({case.endpoint}): {why}")
    return problems


# --- the world, built once and restored before each route -------------------------------------------------

@dataclasses.dataclass
class Matrix:
    app: object
    client: object
    creds: dict[str, dict[str, str]]  # caller -> headers
    ids: dict[str, str]
    db_path: Path
    state: Path
    pristine: sqlite3.Connection
    images: Path


def _token_of(client, name: str, password: str, project: str) -> str:
    resp = issue(client, name, password, project)
    assert resp.status_code == 201, resp.get_json()
    return resp.headers["X-Subject-Token"]


def _invalid_tokens(client, admin: Cred, make_user, a: Cred) -> dict[str, str]:
    """The five callers that must get 401, each of which would pass every project rule of A if it were valid."""
    from core import db
    from core.crypto import token_hash
    from core.models import Token, utcnow

    expired = _token_of(client, a.user_name, a.password, a.project_name)
    with db.write_session() as s:
        s.query(Token).filter(Token.id_hash == token_hash(expired)).update(
            {"expires_at": utcnow().replace(year=2000)})
    revoked = _token_of(client, a.user_name, a.password, a.project_name)
    assert client.delete("/identity/v3/auth/tokens", headers={**admin.headers,
                                                              "X-Subject-Token": revoked}).status_code == 204
    dave = make_user("dave", a.project_name, "member")
    pat = make_user("pat", "proj-c", "admin")
    assert client.patch(f"/identity/v3/users/{dave.user_id}", json={"user": {"enabled": False}},
                        headers=admin.headers).status_code == 200
    assert client.patch(f"/identity/v3/projects/{pat.project_id}", json={"project": {"enabled": False}},
                        headers=admin.headers).status_code == 200
    return {"no_token": "", "expired": expired, "revoked": revoked, "disabled_user": dave.token,
            "disabled_project": pat.token}


def _made(resp, key: str | None = None, code: int = 201) -> dict:
    assert resp.status_code == code, resp.get_data(as_text=True)
    body = resp.get_json()
    return body[key] if key else body


def _ids(client, admin: Cred, w) -> dict[str, str]:
    """Path arguments: project A's resources and shared ones that exist, so an allowed caller reaches the view's
    work. Keys ``<blueprint>:<arg>`` or ``<service>:<arg>`` win over ``<arg>`` (one name, several APIs)."""
    from core import db
    from core.models import Instance

    a, ad = {**w.a.headers, **COMPUTE}, {**admin.headers, **COMPUTE}
    with db.write_session() as s:  # ACTIVE on a host, as after a boot: actions and metadata writes may run
        s.query(Instance).filter(Instance.uuid == w.server_id).update(
            {"vm_state": "active", "task_state": None, "host": "h1", "power_state": 1})
    _made(client.put(f"/v2.1/servers/{w.server_id}/metadata/x", json={"meta": {"x": "v"}}, headers=a), code=200)
    _made(client.put(f"/v2.1/servers/{w.server_id}/tags/x", headers=a))
    group = _made(client.post("/v2.1/os-server-groups", json={"server_group": {"name": "g", "policy": "affinity"}},
                              headers=a), "server_group", 200)
    aggregate = _made(client.post("/v2.1/os-aggregates", json={"aggregate": {"name": "agg"}}, headers=ad),
                      "aggregate", 200)
    _made(client.post(f"/v2.1/flavors/{w.flavor_id}/os-extra_specs",
                      json={"extra_specs": {"hw:cpu_policy": "shared"}}, headers=ad), code=200)
    # A's image is shared with B (Glance: only shared images have members), with a tag and a property
    _made(client.patch(f"/image/v2/images/{w.image_id}", data=json.dumps(
        [{"op": "replace", "path": "/visibility", "value": "shared"},
         {"op": "add", "path": "/x", "value": "v"}]), content_type=PATCH_TYPE, headers=w.a.headers), code=200)
    _made(client.put(f"/image/v2/images/{w.image_id}/tags/x", headers=w.a.headers), code=204)
    _made(client.post(f"/image/v2/images/{w.image_id}/members", json={"member": w.b.project_id},
                      headers=w.a.headers), code=200)
    # Keystone: a group, a region, a service with an endpoint, A's member's application credential
    ih = admin.headers
    kgroup = _made(client.post("/identity/v3/groups", json={"group": {"name": "kg"}}, headers=ih), "group")
    _made(client.post("/identity/v3/regions", json={"region": {"id": "r1"}}, headers=ih), "region")
    service = _made(client.post("/identity/v3/services", json={"service": {"type": "block-storage",
                                                                           "name": "cinder"}}, headers=ih), "service")
    endpoint = _made(client.post("/identity/v3/endpoints", json={"endpoint": {
        "service_id": service["id"], "interface": "public", "url": "http://volume.test/"}}, headers=ih), "endpoint")
    roles = {r["name"]: r["id"] for r in _made(client.get("/identity/v3/roles", headers=ih), "roles", 200)}
    cred = _made(client.post(f"/identity/v3/users/{w.a.user_id}/application_credentials",
                             json={"application_credential": {"name": "ac"}}, headers=w.a.headers),
                 "application_credential")
    # Placement: a provider with an inventory and a trait, a custom resource class and trait
    ph = {**admin.headers, "OpenStack-API-Version": "placement 1.39"}
    rp = _made(client.post("/placement/resource_providers", json={"name": "rp1"}, headers=ph), code=200)
    _made(client.put("/placement/traits/CUSTOM_T", headers=ph))
    _made(client.put("/placement/resource_classes/CUSTOM_RC", headers=ph))
    _made(client.put(f"/placement/resource_providers/{rp['uuid']}/inventories", json={
        "resource_provider_generation": rp["generation"], "inventories": {"VCPU": {"total": 8}}}, headers=ph), code=200)
    # Networking: A's server gets its address on the built-in network (as a boot with a NIC): A's port
    from core.models import FixedIP
    from core.network import builtin
    from core.writes.networking import allocate_fixed_ip
    with db.write_session() as s:
        allocate_fixed_ip(s, w.server_id)
    with db.read_session() as s:
        port_id = s.query(FixedIP.port_id).filter(FixedIP.instance_uuid == w.server_id).scalar()
    actions = client.get(f"/v2.1/servers/{w.server_id}/os-instance-actions", headers=a)
    return {"server_id": w.server_id, "image_id": w.image_id, "name": w.keypair, "project_id": w.a.project_id,
            "tenant_id": w.a.project_id, "user_id": w.a.user_id, "member_id": w.b.project_id,
            "request_id": actions.get_json()["instanceActions"][0]["request_id"], "flavor_id": w.flavor_id,
            "group_id": group["id"], "aggregate_id": str(aggregate["id"]), "key": "x", "tag": "x",
            "flavor_access:key": "hw:cpu_policy", "network_id": str(uuid.uuid4()), "hypervisor_id": "1",
            "service_id": str(uuid.uuid4()), "host_name": "h1", "class_name": "default", "alias": "os-keypairs",
            "keystone:group_id": kgroup["id"], "keystone:service_id": service["id"], "region_id": "r1",
            "endpoint_id": endpoint["id"], "role_id": roles["member"], "prior_role_id": roles["admin"],
            "implied_role_id": roles["manager"], "cred_id": cred["id"], "domain_id": "default",
            "consumer": w.server_id, "uuid": rp["uuid"], "rc": "VCPU", "placement:name": "CUSTOM_T",
            "placement_resource_classes:name": "CUSTOM_RC",
            "neutron:network_id": builtin().id, "subnet_id": builtin().subnet_id, "port_id": port_id,
            "neutron:alias": "quotas",
            "subject_token": _token_of(client, w.a.user_name, w.a.password, w.a.project_name)}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    from core.db import get_engine, reset as db_reset
    from core.models import Base

    tmp = tmp_path_factory.mktemp("authz")
    with pytest.MonkeyPatch.context() as mp:
        state = tmp / "state"
        for var, value in (("STRATUS_STATE_DIR", str(state)), ("STRATUS_PUBLIC_URL", PUBLIC_URL),
                           ("STRATUS_MAX_IMAGE_SIZE", str(1 << 20)), ("STRATUS_TOKEN_TTL", "3600"),
                           ("STRATUS_PASSWORD_HASH_ROUNDS", "4")):
            mp.setenv(var, value)
        for var in ("STRATUS_DATABASE_URL", "STRATUS_CONFIG", "STRATUS_POLICY_FILE"):
            mp.delenv(var, raising=False)
        db_reset()
        state.mkdir()
        Base.metadata.create_all(get_engine())
        from app import create_app
        app = create_app({"TESTING": True})
        client = app.test_client()
        patch_conductor(mp)
        admin = bootstrap_admin(client)
        make_user = user_maker(client)
        w = build_world(client, admin, make_user)
        creds = {"admin": admin.headers, "member": w.a.headers, "reader": w.reader.headers,
                 "other": w.b.headers}
        ids = _ids(client, admin, w)
        creds.update({k: {"X-Auth-Token": v} if v else {}
                      for k, v in _invalid_tokens(client, admin, make_user, w.a).items()})
        db_path = state / "stratus.sqlite"
        pristine = sqlite3.connect(":memory:")
        with sqlite3.connect(db_path) as live:
            live.backup(pristine)
        images = tmp / "images-pristine"
        shutil.copytree(state / "images", images)
        yield Matrix(app, client, creds, ids, db_path, state, pristine, images)
        db_reset()


def _restore(m: Matrix) -> None:
    live = sqlite3.connect(m.db_path)
    try:
        m.pristine.backup(live)
    finally:
        live.close()
    shutil.rmtree(m.state / "images")
    shutil.copytree(m.images, m.state / "images")


def _snapshot(m: Matrix) -> dict[str, str]:
    """A digest of every table's rows, and of the image store's files (names and sizes)."""
    conn = sqlite3.connect(m.db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {t: hashlib.sha256(repr(sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"')))).encode())
               .hexdigest() for t in tables}
    finally:
        conn.close()
    store = m.state / "images"
    out["<image store>"] = repr(sorted((str(p.relative_to(store)), p.stat().st_size) for p in store.rglob("*")))
    return out


def _send(m: Matrix, case: Case, caller: str, body):
    blueprint = case.endpoint.split(".")[0]
    service = FAMILIES[blueprint]
    url = _ARG.sub(lambda g: m.ids.get(f"{blueprint}:{g.group(1)}", m.ids.get(f"{service.name}:{g.group(1)}",
                                                                                m.ids.get(g.group(1), "x"))),
                   case.rule)
    headers = {**dict(service.headers), **m.creds[caller]}
    if case.endpoint in ("identity_tokens.validate_token", "identity_tokens.revoke_token"):
        headers["X-Subject-Token"] = m.ids["subject_token"]
    last = LAST_VERSION.get(case.endpoint.split(".")[0])
    if last and service is NOVA:
        headers["OpenStack-API-Version"] = f"compute {last}"
    if case.endpoint == "image.update_image":
        return m.client.open(url, method=case.method, data=json.dumps(body), content_type=PATCH_TYPE,
                             headers=headers)
    if case.endpoint in ("image.upload_image", "image_import.stage"):
        return m.client.open(url, method=case.method, data=b"z" * 64, content_type="application/octet-stream",
                             headers=headers)
    return m.client.open(url, method=case.method, json=body if case.method in WRITES else None, headers=headers)


def _judge(case: Case, caller: str, level: str, owned: bool, resp) -> tuple[bool, str | None]:
    """Whether ``caller`` passes ``level`` here, and what is wrong with ``resp`` (None: nothing)."""
    code = resp.status_code
    service = FAMILIES[case.endpoint.split(".")[0]]
    if level == "public":
        allowed, refusal = True, set()
    elif caller in INVALID:
        allowed, refusal = False, {401}
    else:
        allowed = caller in _passes(level, owned)
        refusal = set(service.other_refusal) if caller == "other" else {403}
    if allowed:
        in_process = code == 503 and b"in-process tests" in resp.data  # needs a compute worker
        if code in (401, 403) or (code >= 500 and not in_process):
            return True, f"allowed by {level} but got {code}"
        return True, None
    if code not in refusal:
        return False, f"refused by {level} (expected {sorted(refusal)}) but got {code}"
    return False, None


def test_every_route_has_a_matrix_entry(app):
    problems = coverage_problems(app)
    assert not problems, "routes the authorization matrix cannot judge:\n" + "\n".join(problems)


def test_a_route_without_an_entry_fails_the_matrix(app):
    """A new blueprint without a FAMILIES line, and a view that declares no level, are both named."""
    from flask import Blueprint

    from app.policy import check
    bp = Blueprint("unlisted_widgets", __name__)

    @bp.get("/v2.1/os-widgets")
    def list_widgets():
        check("admin_api")
        return {}

    app.register_blueprint(bp)
    app.add_url_rule("/v2.1/os-gadgets", "servers.gadgets", lambda: {})
    problems = coverage_problems(app)
    assert any(p.startswith("GET /v2.1/os-widgets (unlisted_widgets.list_widgets): no matrix entry")
               for p in problems), problems
    assert any(p.startswith("GET /v2.1/os-gadgets (servers.gadgets): its view declares no policy level")
               for p in problems), problems


def _all_cases() -> list[Case]:
    """The URL map's routes, at collection: an app built in a scratch state dir, Celery left unconfigured (its
    configuration is read once per process, from the settings of the first app that touches it)."""
    import os
    import tempfile
    from unittest import mock

    from core.db import reset as db_reset
    old = os.environ.get("STRATUS_STATE_DIR")
    with tempfile.TemporaryDirectory() as tmp, mock.patch("tasks.messaging.rpc.configure_client"):
        os.environ["STRATUS_STATE_DIR"] = tmp
        try:
            from app import create_app
            return _cases(create_app({"TESTING": True}))
        finally:
            if old is None:
                os.environ.pop("STRATUS_STATE_DIR")
            else:
                os.environ["STRATUS_STATE_DIR"] = old
            db_reset()


@pytest.mark.parametrize("case", _all_cases(), ids=lambda c: c.id)
def test_authorization_matrix(matrix: Matrix, case: Case):
    blueprint = case.endpoint.split(".")[0]
    assert blueprint in FAMILIES, f"{case.id} ({case.endpoint}): no matrix entry: add {blueprint!r} to FAMILIES"
    _restore(matrix)
    arguments = set(_ARG.findall(case.rule))
    service = FAMILIES[blueprint]
    owned = bool(arguments & (OWNED | service.owned_args | {"tenant_id", "member_id", "group_id", "consumer"})) \
        or case.endpoint in TARGETS_A
    wrong = []
    for body in MATRIX_BODIES.get(case.endpoint, [{}]):
        level, why = _levels(matrix.app, case.endpoint, body)
        assert level is not None, f"{case.id} ({case.endpoint}): {why}"
        if level == "public":  # no token check at all: one caller of each kind suffices
            callers: tuple[str, ...] = ("no_token", "revoked", "admin")
        else:  # refused callers first: an allowed write may change the world
            callers = INVALID + tuple(sorted(VALID, key=lambda c: c in _passes(level, owned)))
        for caller in callers:
            refused = level != "public" and (caller in INVALID or caller not in _passes(level, owned))
            before = _snapshot(matrix) if refused and case.method in WRITES else None
            resp = _send(matrix, case, caller, body)
            allowed, problem = _judge(case, caller, level, owned, resp)
            assert allowed != refused
            if before is not None:
                changed = sorted(t for t, digest in _snapshot(matrix).items() if before.get(t) != digest)
                if changed:
                    problem = f"{problem or 'refused'}, and changed the tables {changed}"
            if problem:
                wrong.append(f"{caller:16} {body!s:40.40} {problem}: {resp.get_data(as_text=True)[:160]}")
    assert not wrong, f"{case.id} ({case.endpoint}):\n" + "\n".join(wrong)
