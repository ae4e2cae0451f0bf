"""Quota arithmetic (core/quota.py), the conductor's quota writes (core/writes/quotas.py) and the read-only views."""
from __future__ import annotations

import pytest

from app.microversion import APIVersion
from core import quota
from tests.unit.inprocess import inprocess_conductor  # noqa: F401  (fixture)

LIMITS = {**quota.configured_defaults(), "instances": 10, "cores": 20, "ram": 51200}


def used(**kw: int) -> dict[str, int]:
    return {**dict.fromkeys(quota.RESOURCES, 0), **kw}


# --- pure arithmetic -----------------------------------------------------------------------------------------------

def test_fits_entirely():
    assert quota.instances_allowed(LIMITS, used(instances=2), 1, 512, 1, 3) == 3


def test_single_instance_over_quota_message_is_novas():
    with pytest.raises(quota.OverQuota) as exc:
        quota.instances_allowed({**LIMITS, "instances": 50}, used(instances=50), 1, 64, 1, 1)
    assert exc.value.message == "Quota exceeded for instances: Requested 1, but already used 50 of 50 instances"


def test_cores_and_ram_named_together():
    limits = {**LIMITS, "cores": 4, "ram": 2048}
    with pytest.raises(quota.OverQuota) as exc:
        quota.instances_allowed(limits, used(instances=1, cores=2, ram=1024), 4, 2048, 1, 1)
    assert exc.value.message == ("Quota exceeded for cores, ram: Requested 4, 2048, but already used 2, 1024 of "
                                 "4, 2048 cores, ram")


def test_multi_create_shrinks_to_headroom_when_min_count_fits():
    # 3 instances left, but only 4 cores: 2 instances of 2 vCPUs fit.
    limits = {**LIMITS, "instances": 10, "cores": 10}
    assert quota.instances_allowed(limits, used(instances=7, cores=6), 2, 64, 1, 5) == 2


def test_multi_create_fails_when_min_count_does_not_fit():
    limits = {**LIMITS, "instances": 10}
    with pytest.raises(quota.OverQuota) as exc:
        quota.instances_allowed(limits, used(instances=8), 1, 64, 3, 5)
    assert exc.value.message == "Quota exceeded for instances: Requested 3-5, but already used 8 of 10 instances"


def test_unlimited_resources_never_over():
    limits = {**LIMITS, "instances": -1, "cores": -1, "ram": -1}
    assert quota.instances_allowed(limits, used(instances=10**6, cores=10**6, ram=10**9), 8, 16384, 1, 50) == 50


def test_zero_headroom_fails_even_with_flexible_count():
    with pytest.raises(quota.OverQuota) as exc:
        quota.instances_allowed(LIMITS, used(instances=10), 1, 64, 1, 4)
    assert "Requested 1-4, but already used 10 of 10 instances" in exc.value.message


def test_metadata_and_personality_limits():
    quota.check_metadata_items(LIMITS, 128)
    with pytest.raises(quota.OverQuota, match="^Maximum number of metadata items exceeds 128$"):
        quota.check_metadata_items(LIMITS, 129)
    quota.check_metadata_items({**LIMITS, "metadata_items": -1}, 10**5)
    ok = [{"path": "/etc/motd", "contents": "aGVsbG8="}]
    quota.check_injected_files(LIMITS, ok)
    with pytest.raises(quota.OverQuota, match="^Personality file limit exceeded$"):
        quota.check_injected_files({**LIMITS, "injected_files": 0}, ok)
    with pytest.raises(quota.OverQuota, match="^Personality file path exceeds maximum 3$"):
        quota.check_injected_files({**LIMITS, "injected_file_path_bytes": 3}, ok)
    with pytest.raises(quota.OverQuota, match="^Personality file content exceeds maximum 4$"):
        quota.check_injected_files({**LIMITS, "injected_file_content_bytes": 4}, ok)
    with pytest.raises(ValueError, match="cannot be decoded"):
        quota.check_injected_files(LIMITS, [{"path": "/x", "contents": "%%%"}])


def test_settable_range_messages_are_novas():
    assert quota.check_settable("instances", 3, 5, -1) == ("Quota limit 3 for instances must be greater than or "
                                                           "equal to already used and reserved 5.")
    assert quota.check_settable("cores", 12, 0, 10) == "Quota limit 12 for cores must be less than or equal to 10."
    assert quota.check_settable("cores", -1, 0, 10) == "Quota limit -1 for cores must be less than or equal to 10."
    assert quota.check_settable("instances", 5, 5, 5) is None and quota.check_settable("ram", -1, 9, -1) is None


def test_user_quota_over_is_reported_with_the_users_usage_and_limit():
    user = ({**LIMITS, "instances": 2}, used(instances=2, cores=2, ram=256))
    with pytest.raises(quota.OverQuota) as exc:
        quota.instances_allowed(LIMITS, used(instances=5), 1, 128, 1, 1, user)
    assert exc.value.message == "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    # The project is checked first: over both, the project's numbers are reported.
    with pytest.raises(quota.OverQuota) as exc:
        quota.instances_allowed(LIMITS, used(instances=10), 1, 128, 1, 1, user)
    assert exc.value.message == "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
    # A multi-create shrinks to the smaller headroom of the two quotas.
    user = ({**LIMITS, "instances": 4}, used(instances=1))
    assert quota.instances_allowed(LIMITS, used(instances=8), 1, 64, 1, 5, user) == 2
    assert quota.instances_allowed(LIMITS, used(instances=1), 1, 64, 1, 5, user) == 3


@pytest.mark.parametrize("version,absent,present", [
    ("2.1", [], ["floating_ips", "injected_files"]),
    ("2.36", ["floating_ips", "security_groups", "fixed_ips"], ["injected_files"]),
    ("2.57", ["floating_ips", "injected_files", "injected_file_path_bytes"], ["server_groups", "metadata_items"]),
])
def test_quota_set_keys_per_microversion(version, absent, present):
    keys = quota.visible(quota.filtered_for_quota_sets(APIVersion(*map(int, version.split(".")))))
    assert not set(absent) & set(keys) and set(present) <= set(keys)


def test_quota_class_keys_per_microversion():
    def keys(v: str) -> list[str]:
        return quota.visible(quota.filtered_for_quota_classes(APIVersion(*map(int, v.split(".")))))
    assert "server_groups" not in keys("2.49") and "floating_ips" in keys("2.49")
    assert "server_groups" in keys("2.50") and "floating_ips" not in keys("2.50")
    assert "injected_files" not in keys("2.57")


# --- conductor writes on a real (SQLite) database -------------------------------------------------------------------

def test_reserve_release_and_project_limits(stratus_env):
    from core.db import read_session, write_session
    from core.errors import ConductorError
    from core.writes import quotas

    with write_session() as s:
        quotas.set_project_quotas(s, "p1", {"instances": 3}, force=False)
    with write_session() as s:
        assert quotas.reserve_instances(s, "p1", 1, 64, 1, 5) == 3
    with pytest.raises(ConductorError) as exc, write_session() as s:
        quotas.reserve_instances(s, "p1", 1, 64, 1, 1)
    assert exc.value.code == 403
    assert exc.value.message == "Quota exceeded for instances: Requested 1, but already used 3 of 3 instances"
    # A limit below usage is refused unless forced.
    with pytest.raises(ConductorError) as exc, write_session() as s:
        quotas.set_project_quotas(s, "p1", {"instances": 2}, force=False)
    assert exc.value.code == 400 and "must be greater than or equal to already used and reserved 3" in \
        exc.value.message
    with write_session() as s:
        quotas.set_project_quotas(s, "p1", {"instances": 2}, force=True)
        quotas.release_quota(s, "p1", 1, 64)
    with read_session() as s:
        assert quota.project_limits(s, "p1")["instances"] == 2
        assert quota.usage(s, "p1")["instances"] == 2 and quota.usage(s, "p1")["ram"] == 128
    with write_session() as s:
        quotas.delete_project_quotas(s, "p1")
    with read_session() as s:
        assert quota.project_limits(s, "p1")["instances"] == 10


def test_default_class_overrides_configuration(stratus_env):
    from core.db import read_session, write_session
    from core.writes import quotas

    with write_session() as s:
        quotas.set_class_quotas(s, "default", {"cores": 7, "server_groups": 2})
        quotas.set_class_quotas(s, "gold", {"cores": 99})
        quotas.set_project_quotas(s, "p2", {"server_groups": 5}, force=False)
    with read_session() as s:
        assert quota.class_limits(s)["cores"] == 7
        assert quota.class_limits(s, "gold")["cores"] == 99 and quota.class_limits(s, "gold")["server_groups"] == 2
        limits = quota.project_limits(s, "p2")
        assert limits["cores"] == 7 and limits["server_groups"] == 5 and limits["instances"] == 10


def test_check_and_reserve_for_server_groups(stratus_env):
    from core.db import read_session, write_session
    from core.errors import ConductorError
    from core.writes import quotas

    msg = "Quota exceeded, too many server groups."
    with write_session() as s:
        quotas.set_project_quotas(s, "p3", {"server_groups": 2, "server_group_members": 2}, force=False)
    for _ in range(2):
        with write_session() as s:
            quotas.check_and_reserve(s, "p3", {"server_groups": 1}, msg)
    with pytest.raises(ConductorError, match=msg), write_session() as s:
        quotas.check_and_reserve(s, "p3", {"server_groups": 1}, msg)
    with write_session() as s:
        quotas.release(s, "p3", {"server_groups": 1})
        quotas.check_and_reserve(s, "p3", {"server_groups": 1}, msg)
    with read_session() as s:
        assert quota.usage(s, "p3")["server_groups"] == 2
    with write_session() as s:
        quotas.check_group_members(s, "p3", 1)
        with pytest.raises(ConductorError, match="too many servers in group"):
            quotas.check_group_members(s, "p3", 2)
        with pytest.raises(ConductorError, match="^Maximum number of metadata items exceeds 128$"):
            quotas.check_metadata_items(s, "p3", 129)
    with pytest.raises(ValueError):
        with write_session() as s:
            quotas.check_and_reserve(s, "p3", {"metadata_items": 1})


# --- read-only API views ------------------------------------------------------------------------------------------

def test_quota_set_show_detail_and_policy(client, admin, make_user):
    reader = make_user("quota-reader", "quota-proj", role="reader")
    other = make_user("other-reader", "other-proj", role="reader")
    h = {**reader.headers, "OpenStack-API-Version": "compute 2.57"}
    r = client.get(f"/v2.1/os-quota-sets/{reader.project_id}", headers=h)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()["quota_set"]
    assert body["id"] == reader.project_id and body["instances"] == 10 and "injected_files" not in body
    r = client.get(f"/v2.1/os-quota-sets/{reader.project_id}/detail", headers=h)
    assert r.get_json()["quota_set"]["cores"] == {"in_use": 0, "limit": 20, "reserved": 0}
    # A reader of another project: 403; admin may read any project.
    assert client.get(f"/v2.1/os-quota-sets/{reader.project_id}", headers=other.headers).status_code == 403
    assert client.get(f"/v2.1/os-quota-sets/{reader.project_id}", headers=admin.headers).status_code == 200
    # Update and delete are admin only; the quota class API too.
    r = client.put(f"/v2.1/os-quota-sets/{reader.project_id}", headers=h, json={"quota_set": {"instances": 1}})
    assert r.status_code == 403 and r.get_json()["forbidden"]["code"] == 403
    assert client.delete(f"/v2.1/os-quota-sets/{reader.project_id}", headers=h).status_code == 403
    assert client.get("/v2.1/os-quota-class-sets/default", headers=h).status_code == 403
    # Old microversion: network keys are there.
    old = client.get(f"/v2.1/os-quota-sets/{reader.project_id}/defaults", headers=reader.headers).get_json()
    assert old["quota_set"]["floating_ips"] == -1 and old["quota_set"]["injected_files"] == 5
    r = client.get("/v2.1/os-quota-sets/no-such-project", headers=admin.headers)
    assert r.status_code == 400 and "is not a valid project" in r.get_json()["badRequest"]["message"]


@pytest.mark.parametrize("body,text", [
    ({"quota_set": {"instances": -2}}, "-2 is less than the minimum of -1"),
    ({"quota_set": {"instances": "ten"}}, "does not match"),
    ({"quota_set": {"instances": 1.5}}, "is not of type 'integer', 'string'"),
    ({"quota_set": {"bogus": 1}}, "('bogus' was unexpected)"),
    ({"quota_set": {"instances": 2 ** 31}}, "is greater than the maximum of 2147483647"),
    ({"quota_set": {"force": "maybe"}}, "force"),
    ({"quota": {"instances": 1}}, "'quota_set' is a required property"),
])
def test_bad_quota_bodies_are_400_before_any_write(client, admin, body, text):
    r = client.put(f"/v2.1/os-quota-sets/{admin.project_id}", headers=admin.headers, json=body)
    assert r.status_code == 400, r.get_json()
    assert text in r.get_json()["badRequest"]["message"]


def test_limits_per_microversion(client, admin):
    absolute = client.get("/v2.1/limits", headers=admin.headers).get_json()["limits"]["absolute"]
    assert absolute["maxTotalInstances"] == 10 and absolute["maxServerMeta"] == 128
    assert absolute["maxImageMeta"] == 128 and absolute["maxPersonality"] == 5
    assert absolute["maxServerGroups"] == 10 and absolute["maxServerGroupMembers"] == 10
    assert absolute["totalInstancesUsed"] == 0 and absolute["totalServerGroupsUsed"] == 0
    assert "maxSecurityGroups" in absolute
    h = {**admin.headers, "OpenStack-API-Version": "compute 2.57"}
    absolute = client.get("/v2.1/limits", headers=h).get_json()["limits"]["absolute"]
    for gone in ("maxSecurityGroups", "maxTotalFloatingIps", "totalFloatingIpsUsed", "maxImageMeta",
                 "maxPersonality", "maxPersonalitySize"):
        assert gone not in absolute
    assert absolute["maxTotalKeypairs"] == 100


def test_limits_of_another_project_is_admin_only(client, admin, make_user):
    member = make_user("lim-member", "lim-proj")
    r = client.get(f"/v2.1/limits?tenant_id={admin.project_id}", headers=member.headers)
    assert r.status_code == 403
    r = client.get(f"/v2.1/limits?tenant_id={member.project_id}", headers=admin.headers)
    assert r.status_code == 200


def test_reserve_quota_deltas_for_other_callers(stratus_env):
    """reserve_quota (kept for existing callers, e.g. a resize's extra cores) shares the counters."""
    from core.db import read_session, write_session
    from core.errors import ConductorError
    from core.writes import quotas

    with write_session() as s:
        quotas.set_project_quotas(s, "p4", {"cores": 4}, force=False)
        quotas.reserve_quota(s, "p4", {"instances": 1, "cores": 2, "ram": 512})
        quotas.reserve_quota(s, "p4", {"instances": 0, "cores": 2, "ram": 0})
    with pytest.raises(ConductorError) as exc, write_session() as s:
        quotas.reserve_quota(s, "p4", {"cores": 1})
    assert exc.value.message == "Quota exceeded for cores: Requested 1, but already used 4 of 4 cores"
    with read_session() as s:
        assert (quota.usage(s, "p4")["instances"], quota.usage(s, "p4")["cores"]) == (1, 4)


# --- per-user quotas ------------------------------------------------------------------------------------------------

def test_user_limits_settable_range_and_enforcement(stratus_env):
    from core.db import read_session, write_session
    from core.errors import ConductorError
    from core.writes import quotas

    def put(values: dict, user: str | None = None, force: bool = False) -> None:
        with write_session() as s:
            quotas.set_project_quotas(s, "pu", values, force, user)

    put({"instances": 10})
    put({"instances": 4, "floating_ips": 7}, "u1")
    with read_session() as s:
        assert quota.user_limits(s, "pu", "u1")["instances"] == 4
        assert quota.user_limits(s, "pu", "u2")["instances"] == 10  # no own limit: the project's
        assert quota.project_limits(s, "pu")["floating_ips"] == 7  # a per-project resource: set on the project
        assert "floating_ips" not in quota.user_rows(s, "pu", "u1")
    # u2 may have what the project has not given to u1 (10 - 4); u1 up to that plus its own 4.
    with pytest.raises(ConductorError, match=r"^Quota limit 7 for instances must be less than or equal to 6\.$"):
        put({"instances": 7}, "u2")
    put({"instances": 10}, "u1", force=True)
    put({"instances": 6}, "u1")
    # The project's limit may not drop below the sum of its users' limits.
    with pytest.raises(ConductorError, match="must be greater than or equal to already used and reserved 6"):
        put({"instances": 5})

    # Counting: u1 is stopped at its 6; u2 still boots; usage is kept per user and per project.
    put({"instances": 2}, "u1")
    with write_session() as s:
        assert quotas.reserve_instances(s, "pu", 1, 64, 1, 5, "u1") == 2
    with pytest.raises(ConductorError) as exc, write_session() as s:
        quotas.reserve_instances(s, "pu", 1, 64, 1, 1, "u1")
    assert exc.value.code == 403
    assert exc.value.message == "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    with write_session() as s:
        quotas.reserve_instances(s, "pu", 1, 64, 1, 1, "u2")
    with pytest.raises(ConductorError, match="already used and reserved 2"), write_session() as s:
        quotas.set_project_quotas(s, "pu", {"instances": 1}, False, "u1")
    with write_session() as s:
        quotas.release_quota(s, "pu", 1, 64, "u1")
    with read_session() as s:
        assert quota.usage(s, "pu", "u1")["instances"] == 1 and quota.usage(s, "pu", "u2")["ram"] == 64
        assert quota.usage(s, "pu")["instances"] == 2

    # Deleting a user's limits leaves the project's; deleting the project's removes its users' too.
    with write_session() as s:
        quotas.delete_project_quotas(s, "pu", "u1")
    with read_session() as s:
        assert quota.user_limits(s, "pu", "u1")["instances"] == 10
    put({"cores": 3}, "u2")
    with write_session() as s:
        quotas.delete_project_quotas(s, "pu")
    with read_session() as s:
        assert quota.user_rows(s, "pu", "u2") == {} and quota.project_limits(s, "pu")["floating_ips"] == -1


def test_user_quota_api_views(client, admin, make_user, inprocess_conductor):
    member = make_user("uq-member", "uq-proj")
    base = f"/v2.1/os-quota-sets/{member.project_id}"
    h = {**admin.headers, "OpenStack-API-Version": "compute 2.75"}
    r = client.put(f"{base}?user_id={member.user_id}", headers=h, json={"quota_set": {"instances": 3}})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["quota_set"]["instances"] == 3 and "id" not in r.get_json()["quota_set"]
    r = client.put(f"{base}?user_id={member.user_id}", headers=h, json={"quota_set": {"cores": 21}})
    assert r.status_code == 400
    assert r.get_json()["badRequest"]["message"] == "Quota limit 21 for cores must be less than or equal to 20."
    assert client.get(base, headers=h).get_json()["quota_set"]["instances"] == 10
    shown = client.get(f"{base}?user_id={member.user_id}", headers=h).get_json()["quota_set"]
    assert shown["instances"] == 3 and shown["cores"] == 20 and shown["id"] == member.project_id
    detail = client.get(f"{base}/detail?user_id={member.user_id}", headers=h).get_json()["quota_set"]
    assert detail["instances"] == {"in_use": 0, "limit": 3, "reserved": 0}
    r = client.get(f"{base}?user_id={member.user_id}&bogus=1", headers=h)
    assert r.status_code == 400 and "('bogus' was unexpected)" in r.get_json()["badRequest"]["message"]
    # A member may not set its own quota; the admin deletes the user's limits.
    r = client.put(f"{base}?user_id={member.user_id}", headers=member.headers, json={"quota_set": {"instances": 9}})
    assert r.status_code == 403
    assert client.delete(f"{base}?user_id={member.user_id}", headers=h).status_code == 202
    assert client.get(f"{base}?user_id={member.user_id}", headers=h).get_json()["quota_set"]["instances"] == 10
