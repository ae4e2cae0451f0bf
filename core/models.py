"""Database models shared read-only by every Stratus service.

Compute tables are written only by the conductor (``tasks/conductor/`` through ``core/writes/``).
Identity and image tables belong to their own services (as Keystone and Glance own their databases) and
are written by those blueprints. Times are naive UTC.
"""
from __future__ import annotations

import datetime as dt
import uuid as uuidlib

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def new_hex_id() -> str:
    return uuidlib.uuid4().hex


class Base(DeclarativeBase):
    pass


# --- Identity (Keystone v3 subset) ----------------------------------------------------------------------------

class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    name: Mapped[str] = mapped_column(String(64))
    domain_id: Mapped[str] = mapped_column(String(64), default="default")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_projects_domain_name"),)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    name: Mapped[str] = mapped_column(String(255))
    domain_id: Mapped[str] = mapped_column(String(64), default="default")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    default_project_id: Mapped[str | None] = mapped_column(String(64))
    # Keystone's lockout: failed password sign-ins in a row, and when the last one was
    failed_auth_count: Mapped[int | None] = mapped_column(Integer)
    failed_auth_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_users_domain_name"),)


class Role(Base):
    __tablename__ = "roles"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class SystemRoleAssignment(Base):
    """A role a user holds on the system (Keystone's system assignments, target ``all``)."""
    __tablename__ = "system_role_assignments"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class Token(Base):
    """An issued token. Only the SHA-256 of the token string is stored."""
    __tablename__ = "tokens"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    audit_id: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Auth methods that produced the token, comma-separated ("password", "password,token").
    methods: Mapped[str] = mapped_column(String(64), default="password", server_default="password")
    # The application credential it was issued for: its roles bound the token's, and deleting it ends the token.
    app_cred_id: Mapped[str | None] = mapped_column(
        ForeignKey("application_credentials.id", ondelete="CASCADE"), index=True)
    # "all" for a system-scoped token (Keystone's ``system: {all: true}``); a system token has no project.
    system_scope: Mapped[str | None] = mapped_column(String(16))


class Group(Base):
    """A Keystone group of users (table name avoids the SQL keyword)."""
    __tablename__ = "identity_groups"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    name: Mapped[str] = mapped_column(String(64))
    domain_id: Mapped[str] = mapped_column(String(64), default="default")
    description: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_identity_groups_domain_name"),)


class GroupMembership(Base):
    __tablename__ = "group_memberships"
    group_id: Mapped[str] = mapped_column(ForeignKey("identity_groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class GroupRoleAssignment(Base):
    """A role a group holds on a project: every member holds it there."""
    __tablename__ = "group_role_assignments"
    group_id: Mapped[str] = mapped_column(ForeignKey("identity_groups.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class ApplicationCredential(Base):
    """A user's application credential on one project; only the secret's hash is stored."""
    __tablename__ = "application_credentials"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    description: Mapped[str | None] = mapped_column(Text)
    secret_hash: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    unrestricted: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_application_credentials_user_name"),)


class ApplicationCredentialRole(Base):
    __tablename__ = "application_credential_roles"
    app_cred_id: Mapped[str] = mapped_column(ForeignKey("application_credentials.id", ondelete="CASCADE"),
                                             primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


# --- Service catalog (Keystone's regions, services, endpoints) ----------------------------------------------------

class Region(Base):
    __tablename__ = "regions"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    parent_region_id: Mapped[str | None] = mapped_column(String(255))


class CatalogService(Base):
    """A service of the catalog (``compute``, ``image`` ...): not Nova's compute services (table ``services``)."""
    __tablename__ = "catalog_services"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    type: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Endpoint(Base):
    __tablename__ = "endpoints"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_hex_id)
    service_id: Mapped[str] = mapped_column(ForeignKey("catalog_services.id", ondelete="CASCADE"), index=True)
    interface: Mapped[str] = mapped_column(String(8))
    region_id: Mapped[str | None] = mapped_column(ForeignKey("regions.id"))
    url: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


# --- Image (Glance v2 subset) -----------------------------------------------------------------------------------

class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(30), default="queued")
    disk_format: Mapped[str | None] = mapped_column(String(30))
    container_format: Mapped[str | None] = mapped_column(String(30))
    size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128))
    visibility: Mapped[str] = mapped_column(String(20), default="shared")
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ImageMember(Base):
    """A project an image is shared with (Glance's image_members): pending, accepted or rejected."""
    __tablename__ = "image_members"
    __table_args__ = (UniqueConstraint("image_id", "member", name="uq_image_members_image_member"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(36), ForeignKey("images.id", ondelete="CASCADE"), index=True)
    member: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ImageTask(Base):
    """An Image service task (Glance's tasks): the interoperable import of one image."""
    __tablename__ = "image_tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    type: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(30), default="pending")
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    image_id: Mapped[str | None] = mapped_column(String(36), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    input: Mapped[dict | None] = mapped_column(JSON)
    result: Mapped[dict | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --- Compute ------------------------------------------------------------------------------------------------------

class Flavor(Base):
    __tablename__ = "flavors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavorid: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    extra_specs: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KeyPair(Base):
    __tablename__ = "key_pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(10), default="ssh")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_key_pairs_user_name"),)


class Service(Base):
    __tablename__ = "services"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)  # scheduler cache refresh
    __table_args__ = (UniqueConstraint("host", "binary", name="uq_services_host_binary"),)


class ComputeNode(Base):
    __tablename__ = "compute_nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    hypervisor_type: Mapped[str] = mapped_column(String(255))
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=0)
    host_ip: Mapped[str | None] = mapped_column(String(64))
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    local_gb: Mapped[int] = mapped_column(Integer)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(Integer, default=0)
    local_gb_used: Mapped[int] = mapped_column(Integer, default=0)
    running_vms: Mapped[int] = mapped_column(Integer, default=0)
    cpu_allocation_ratio: Mapped[float] = mapped_column(Float, default=4.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    disk_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    # Placement's view of the node (core/placement.py): capacity an operator holds back from the scheduler
    # ((total - reserved) * ratio is what the claim and the filters may use), and the provider generation,
    # moved by every claim, release and Placement write of this node.
    vcpus_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    memory_mb_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    local_gb_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the Placement traits its driver reports (standard os-traits names only)
    driver_traits: Mapped[list | None] = mapped_column(JSON)
    # the host's public X25519 key (core/host_keys.py): the conductor seals a step's secrets for this host with it
    sealing_key: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)  # scheduler cache refresh
    service: Mapped[Service] = relationship(lazy="joined")


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    display_name: Mapped[str] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(Text)
    hostname: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    image_ref: Mapped[str] = mapped_column(String(36))
    flavor_id: Mapped[int] = mapped_column(ForeignKey("flavors.id"))
    # Flavor as booted (a flavor may later be deleted); Nova embeds it in the instance too.
    flavor_snapshot: Mapped[dict] = mapped_column(JSON)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    vm_state: Mapped[str] = mapped_column(String(255), index=True)
    task_state: Mapped[str | None] = mapped_column(String(255))
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255), index=True)
    node: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    requested_availability_zone: Mapped[str | None] = mapped_column(String(255))
    key_name: Mapped[str | None] = mapped_column(String(255))
    key_data: Mapped[str | None] = mapped_column(Text)
    # Secrets are stored encrypted (Fernet) and never leave the DB in task messages.
    user_data_enc: Mapped[str | None] = mapped_column(Text)
    admin_pass_enc: Mapped[str | None] = mapped_column(Text)
    config_drive: Mapped[str] = mapped_column(String(255), default="")
    metadata_items: Mapped[dict] = mapped_column(JSON, default=dict)
    # Nova's instance_system_metadata: internal key/values (shelved_image_id, shelved_at, shelved_host).
    system_metadata: Mapped[dict | None] = mapped_column(JSON)
    networks_request: Mapped[object] = mapped_column(JSON, default=None)
    scheduler_hints: Mapped[dict] = mapped_column(JSON, default=dict)
    access_ip_v4: Mapped[str | None] = mapped_column(String(64))
    access_ip_v6: Mapped[str | None] = mapped_column(String(64))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_reason: Mapped[str | None] = mapped_column(String(255))
    locked_by: Mapped[str | None] = mapped_column(String(5))  # 'owner' | 'admin' (Nova; unlock_override)
    # The ``tag`` of the image block device mapping (2.32, 2.42+), shown in the guest's device metadata.
    root_device_tag: Mapped[str | None] = mapped_column(String(60))
    # Tagged devices as the driver placed them at spawn (Nova's instance_extra.device_metadata): a list of
    # {"type": "nic"|"disk", "bus", "address", "mac"|"serial", "tags"}; core/metadata_docs.py renders it per version.
    device_metadata: Mapped[list | None] = mapped_column(JSON)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    reservation_id: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The host the boot asked for (2.74 ``host``, forced ``zone:host``): a stalled boot is scheduled again with it.
    requested_host: Mapped[str | None] = mapped_column(String(255))
    launched_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # 0 for live rows; the row id once deleted (Nova's soft-delete convention).
    deleted: Mapped[int] = mapped_column(Integer, default=0, index=True)
    flavor: Mapped[Flavor] = relationship(lazy="raise")
    __table_args__ = (Index("ix_instances_project_deleted_created", "project_id", "deleted", "created_at"),)


class InstanceTag(Base):
    """A server tag (API 2.26+; Nova's ``tags`` table)."""
    __tablename__ = "instance_tags"
    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    tag: Mapped[str] = mapped_column(String(60), primary_key=True)


class InstanceFault(Base):
    __tablename__ = "instance_faults"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    code: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class InstanceAction(Base):
    __tablename__ = "instance_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(255))
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    request_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(64))
    start_time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[dt.datetime | None] = mapped_column(DateTime)
    message: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The compute canvas the action sent (step names and its context of IDs, no spec or secret), so that
    # tasks/resume.py can send it again when a broker lost its message (Stratus's own; Nova has no such column).
    canvas: Mapped[dict | None] = mapped_column(JSON)


class InstanceActionEvent(Base):
    __tablename__ = "instance_action_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("instance_actions.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(255))
    start_time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[dt.datetime | None] = mapped_column(DateTime)
    result: Mapped[str | None] = mapped_column(String(255))
    traceback: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)  # a failed event's fault message (shown from 2.84)


class Allocation(Base):
    """Resources an instance holds on a compute node (Nova's placement allocations)."""
    __tablename__ = "allocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    compute_node_id: Mapped[int] = mapped_column(ForeignKey("compute_nodes.id", ondelete="CASCADE"), index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class QuotaUsage(Base):
    """Per-project usage counters, changed only by conditional UPDATEs so limits hold under concurrency."""
    __tablename__ = "quota_usages"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    cores: Mapped[int] = mapped_column(Integer, default=0)
    ram: Mapped[int] = mapped_column(Integer, default=0)
    server_groups: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class QuotaUserUsage(Base):
    """Per-user usage counters within a project (Nova counts instances, cores, RAM and server groups per user too);
    changed in the same conditional UPDATEs as the project's row."""
    __tablename__ = "quota_user_usages"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    cores: Mapped[int] = mapped_column(Integer, default=0)
    ram: Mapped[int] = mapped_column(Integer, default=0)
    server_groups: Mapped[int] = mapped_column(Integer, default=0)


class QuotaUserLimit(Base):
    """Nova's project_user_quotas: a user's own limits within a project (``os-quota-sets?user_id=``)."""
    __tablename__ = "project_user_quotas"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaLimit(Base):
    """Per-project overrides of the default quotas."""
    __tablename__ = "quota_limits"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaClass(Base):
    """Nova's quota classes: the ``default`` class overrides the configured default quotas."""
    __tablename__ = "quota_classes"
    class_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)

# --- Server groups (Nova's instance groups) -------------------------------------------------------------------

class InstanceGroup(Base):
    """A server group: its members are placed by ``policy`` (affinity, anti-affinity, soft-*) and ``rules``."""
    __tablename__ = "instance_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(255))
    rules: Mapped[dict] = mapped_column(JSON, default=dict)  # {"max_server_per_host": int} for anti-affinity
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class InstanceGroupMember(Base):
    """An instance's membership of a server group (an instance is in at most one); removed when it is deleted."""
    __tablename__ = "instance_group_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("instance_groups.id", ondelete="CASCADE"), index=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --- Consoles -----------------------------------------------------------------------------------------------------

class ConsoleAuthToken(Base):
    """A browser-console token (Nova's console_auth_tokens). Only the SHA-256 of the token is stored.

    Bound to one instance, one console type (``novnc`` | ``spice-html5``) and the host/port the proxy may
    connect to. Single use: the proxy's first connection sets ``used_at`` through the conductor (a CAS on
    ``used_at IS NULL AND expires > now``). SPICE opens one WebSocket per channel, so after its main channel
    consumed the token, the same client address may open the session's other channels for a short window.
    """
    __tablename__ = "console_auth_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    console_type: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    internal_access_path: Mapped[str | None] = mapped_column(String(255))
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    expires: Mapped[int] = mapped_column(BigInteger, index=True)  # epoch seconds (UTC), as in Nova
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    used_at: Mapped[int | None] = mapped_column(BigInteger)  # epoch seconds of the consuming connection
    used_by: Mapped[str | None] = mapped_column(String(64))  # client address of the consuming connection


# --- Instance networking (one flat network managed by Stratus) ---------------------------------------------------

class Network(Base):
    """A flat network on a host bridge. Stratus has one built-in network (core/network.py, from settings)."""
    __tablename__ = "networks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    cidr: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    bridge: Mapped[str] = mapped_column(String(15))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class FixedIP(Base):
    """An address (and MAC) allocated to an instance on a network; the row exists only while allocated."""
    __tablename__ = "fixed_ips"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The Networking API's port id of this address (a port is this row: app/network/ports.py)
    port_id: Mapped[str] = mapped_column(String(36), default=new_uuid)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(32), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    tag: Mapped[str | None] = mapped_column(String(60))  # the ``networks`` entry's device tag (2.32)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("network_id", "address", name="uq_fixed_ips_network_address"),
                      UniqueConstraint("port_id", name="uq_fixed_ips_port_id"))


class InstancePassword(Base):
    """The password a guest posted to the metadata service (openstack/<v>/password); written once (Nova)."""
    __tablename__ = "instance_passwords"
    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    password: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --- Host aggregates, flavor access, migrations (admin APIs) -------------------------------------------------------

class Aggregate(Base):
    """A host aggregate; an ``availability_zone`` metadata key makes it an availability zone (Nova)."""
    __tablename__ = "aggregates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    hosts: Mapped[list["AggregateHost"]] = relationship(lazy="selectin", cascade="all, delete-orphan",
                                                        order_by="AggregateHost.id")
    metadata_items: Mapped[list["AggregateMetadata"]] = relationship(lazy="selectin", cascade="all, delete-orphan",
                                                                     order_by="AggregateMetadata.id")


class AggregateHost(Base):
    __tablename__ = "aggregate_hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aggregate_id: Mapped[int] = mapped_column(ForeignKey("aggregates.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    __table_args__ = (UniqueConstraint("aggregate_id", "host", name="uq_aggregate_hosts_aggregate_host"),)


class AggregateMetadata(Base):
    __tablename__ = "aggregate_metadata"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aggregate_id: Mapped[int] = mapped_column(ForeignKey("aggregates.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    __table_args__ = (UniqueConstraint("aggregate_id", "key", name="uq_aggregate_metadata_aggregate_key"),)


class FlavorProject(Base):
    """A project allowed to use a private flavor (Nova's flavor_projects)."""
    __tablename__ = "flavor_projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavor_id: Mapped[int] = mapped_column(ForeignKey("flavors.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    __table_args__ = (UniqueConstraint("flavor_id", "project_id", name="uq_flavor_projects_flavor_project"),)


class Migration(Base):
    """A move of an instance between hosts or flavors: resize, cold/live migration, evacuation (Nova's migrations
    table and columns, plus the flavors before and after, which Nova keeps in instance_extra)."""
    __tablename__ = "migrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    source_compute: Mapped[str | None] = mapped_column(String(255))
    dest_compute: Mapped[str | None] = mapped_column(String(255))
    source_node: Mapped[str | None] = mapped_column(String(255))
    dest_node: Mapped[str | None] = mapped_column(String(255))
    dest_host: Mapped[str | None] = mapped_column(String(255))
    old_instance_type_id: Mapped[int | None] = mapped_column(Integer)
    new_instance_type_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(255), index=True)
    # migration | resize | live-migration | evacuation
    migration_type: Mapped[str] = mapped_column(String(32), default="migration")
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    memory_total: Mapped[int | None] = mapped_column(BigInteger)
    memory_processed: Mapped[int | None] = mapped_column(BigInteger)
    memory_remaining: Mapped[int | None] = mapped_column(BigInteger)
    disk_total: Mapped[int | None] = mapped_column(BigInteger)
    disk_processed: Mapped[int | None] = mapped_column(BigInteger)
    disk_remaining: Mapped[int | None] = mapped_column(BigInteger)
    cross_cell_move: Mapped[bool] = mapped_column(Boolean, default=False)
    old_flavor: Mapped[dict] = mapped_column(JSON, default=dict)
    new_flavor: Mapped[dict] = mapped_column(JSON, default=dict)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    deleted: Mapped[int] = mapped_column(Integer, default=0)


# --- Placement: what compute nodes do not already say (core/placement.py builds the API's views) --------------------

class ResourceProvider(Base):
    """A resource provider an operator added through the Placement API (compute nodes are providers by
    themselves: their rows are the truth)."""
    __tablename__ = "placement_providers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    parent_provider_uuid: Mapped[str | None] = mapped_column(String(36), index=True)
    root_provider_uuid: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ProviderInventory(Base):
    """An inventory of a hand-added provider."""
    __tablename__ = "placement_inventories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("placement_providers.id", ondelete="CASCADE"), index=True)
    resource_class: Mapped[str] = mapped_column(String(255))
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    min_unit: Mapped[int] = mapped_column(Integer, default=1)
    max_unit: Mapped[int] = mapped_column(Integer)
    step_size: Mapped[int] = mapped_column(Integer, default=1)
    allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    __table_args__ = (UniqueConstraint("provider_id", "resource_class", name="uq_placement_inventories_class"),)


class ConsumerAllocation(Base):
    """Resources a consumer other than a server holds on a hand-added provider (servers' are ``allocations``)."""
    __tablename__ = "placement_allocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer_uuid: Mapped[str] = mapped_column(String(36), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("placement_providers.id", ondelete="CASCADE"), index=True)
    resource_class: Mapped[str] = mapped_column(String(255))
    used: Mapped[int] = mapped_column(Integer)


class Consumer(Base):
    """A consumer of hand-added providers' resources, with its generation (Placement 1.28)."""
    __tablename__ = "placement_consumers"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    consumer_type: Mapped[str] = mapped_column(String(255), default="UNKNOWN")
    generation: Mapped[int] = mapped_column(Integer, default=0)


class CustomResourceClass(Base):
    __tablename__ = "placement_resource_classes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class CustomTrait(Base):
    __tablename__ = "placement_traits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class ProviderTrait(Base):
    """A trait of a provider (a compute node's or a hand-added one's, by the provider's uuid)."""
    __tablename__ = "placement_provider_traits"
    provider_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    trait: Mapped[str] = mapped_column(String(255), primary_key=True)


class ProviderAggregate(Base):
    """A hand-added provider's aggregate (a compute node's are the host aggregates it is in)."""
    __tablename__ = "placement_provider_aggregates"
    provider_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    aggregate_uuid: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
