"""One settings object for every Stratus process.

Values come from, in order of precedence: ``STRATUS_<NAME>`` environment variables, the TOML file named by
``STRATUS_CONFIG`` (keys are the lower-case field names), then the defaults below. Unset database and broker
URLs mean the embedded default: a SQLite file and kombu's filesystem transport under ``state_dir``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Settings:
    state_dir: str = "var"
    database_url: str = ""
    broker_url: str = ""
    # TLS to the broker (amqps:// or rediss://): the CA to verify it by (empty: the system's) and the client
    # certificate + key where the broker asks for one (core/broker_tls.py).
    broker_ssl_ca: str = ""
    broker_ssl_cert: str = ""
    broker_ssl_key: str = ""
    result_backend: str = ""
    secret_key_file: str = ""
    # Seconds between polls of the embedded filesystem broker: lower is faster per hop, higher idles cheaper.
    fs_broker_polling_interval: float = 0.05
    # Public endpoint used in the service catalog and version documents.
    public_url: str = "http://127.0.0.1:8774"
    token_ttl: int = 3600
    # bcrypt cost of new password hashes (Keystone's [identity] password_hash_rounds; bcrypt allows 4-31). Each
    # step doubles a password check: 12 takes about 0.25 s here. Existing hashes keep the cost they were made with.
    password_hash_rounds: int = 12
    # Keystone's [security_compliance] lockout: after this many failed password sign-ins in a row a user is
    # locked (401 "The account is locked for user: <id>.") for lockout_duration seconds, or until an admin
    # enables it again when that is 0. 0 attempts: off (Keystone's default, None).
    lockout_failure_attempts: int = 0
    lockout_duration: int = 0
    rpc_timeout: float = 30.0
    # Redis: seconds before a message a dead worker took (unacknowledged) is delivered again. Below
    # instance_build_timeout, so a killed compute worker's boot resumes before it is expired; above the longest
    # task and retry countdown (30 s), else a task still running is delivered a second time (steps are
    # idempotent, so that costs time, not correctness).
    broker_visibility_timeout: int = 300
    # Compute worker
    compute_driver: str = "fake"
    compute_hosts: str = ""  # comma-separated host names this worker serves; default: the machine's name
    availability_zone: str = "nova"
    report_interval: int = 10
    # This host's address on the management network (Nova's my_ip): the compute node's reported host_ip, and by
    # default where the console proxies reach its guests' VNC/SPICE servers. Set it on every compute host of a
    # cloud spread over machines. Empty: fake 127.0.0.1, libvirt the source address of the default route.
    my_ip: str = ""
    # Where the console proxies connect for this host's guests (Nova's [vnc] server_proxyclient_address), when
    # not my_ip (a NAT between proxy and host). Neither set: 127.0.0.1 (proxies and guests on one machine).
    console_proxyclient_address: str = ""
    # An instance whose task_state has not moved for this long goes to ERROR (BUILD) or back to no task.
    instance_build_timeout: int = 900
    # A boot or another action with no progress for this long has its current step sent again, once (a broker can
    # lose a message it handed out: tasks/periodic.resume_stalled_builds, tasks/conductor/resume.py). Above
    # broker_visibility_timeout, below both timeouts.
    stalled_build_resume_after: int = 360
    task_state_timeout: int = 900
    service_down_time: int = 60
    shutdown_timeout: int = 60  # seconds a stop waits for a clean (ACPI) guest shutdown before a hard one (Nova)
    # Fake driver inventory per host
    fake_vcpus: int = 16
    fake_memory_mb: int = 32768
    fake_local_gb: int = 512
    # Fake guests outlive the worker process (one JSON file per guest under <state_dir>/fake-guests/<host>),
    # as real guests outlive nova-compute; 0 keeps them in process memory only.
    fake_persist: int = 1
    fake_console_port: int = 5900  # the port the fake driver names for every guest's VNC/SPICE console
    # Seconds the fake driver spends inside build_disk / spawn (lets tests kill a worker mid-step).
    fake_build_disk_delay: float = 0.0
    fake_spawn_delay: float = 0.0
    # Seconds a fake live migration copies before it completes (it can be aborted or forced to complete meanwhile).
    fake_live_migration_seconds: float = 0.0
    # libvirt driver
    libvirt_uri: str = "qemu:///system"
    libvirt_virt_type: str = "auto"  # auto | kvm | qemu
    libvirt_bridge: str = ""  # empty: user-mode NIC; else an existing Linux bridge
    instances_path: str = ""  # default: <state_dir>/instances
    # Live migration between libvirt hosts (Nova's [libvirt] live_migration_uri / live_migration_inbound_addr): the
    # source's libvirtd connects peer-to-peer to this template filled with the destination's inbound address, which
    # the destination names itself (its live_migration_inbound_addr, else my_ip / its reported host_ip).
    live_migration_uri: str = "qemu+tcp://%s/system"
    live_migration_inbound_addr: str = ""
    live_migration_bandwidth: int = 0  # MiB/s a live migration may use (Nova's); 0: no limit
    # Compute hosts reach images through the Image API only (issue 25): its endpoint (empty: the "image" endpoint
    # of the service catalog), and the compute's own service credential (Keystone v3 password auth, project-scoped;
    # `flask stratus bootstrap` creates the user with the `service` role in project `service` when
    # STRATUS_SERVICE_PASSWORD is set). service_auth_url empty: <public_url>/identity/v3.
    image_api_url: str = ""
    service_auth_url: str = ""
    service_user: str = "compute"
    service_password: str = dataclasses.field(default="", repr=False)
    service_project: str = "service"
    # Downloaded images per host (<state_dir>/image-cache): least recently used ones beyond this size are removed,
    # never one a guest's disk still uses. 0: no limit.
    image_cache_max_mb: int = 10240
    # The embedded filesystem broker's directory (empty: <state_dir>/broker), when a compute keeps its own state
    # dir on the controller's machine.
    fs_broker_dir: str = ""
    # Instance networking: one flat network managed by Stratus (tools/stratus-network up|down makes the bridge)
    network_name: str = "private"
    network_cidr: str = "10.77.0.0/24"  # gateway = first host address (on the bridge); guests get the others
    network_bridge: str = "stratusbr0"
    # Metadata service (metadata/, port 8775; guests reach it at 169.254.169.254 through the bridge's DNAT)
    metadata_proxy_shared_secret: str = ""  # non-empty: accept X-Instance-ID(-Signature) from a proxy in front
    metadata_cache_ttl: int = 15  # seconds an instance's metadata is cached per process (Nova: 15)
    # Per-host metadata proxy (``python -m metadata.proxy`` on a compute host of a cloud spread over machines):
    # it listens where the host's bridge DNATs guests' 169.254.169.254:80 and relays to the central service,
    # naming the guest's address and this host, signed with this host's key (docs/architecture-notes.md).
    metadata_url: str = ""  # the central metadata service, e.g. http://controller:8775
    metadata_proxy_bind: str = ""  # empty: <network gateway>:8775
    metadata_proxy_host: str = ""  # the host it speaks for; empty: the first of compute_hosts
    metadata_host_key: str = ""  # this host's key, derived from the shared secret: python -m metadata.proxy key HOST
    # Hosts whose guests the service may identify by a request's own source address (not relayed by a proxy):
    # "*" every host (one machine); a comma list; "none" (every guest's request comes through its host's proxy).
    metadata_direct_hosts: str = "*"
    # VNC/SPICE listen address in the domain XML (Nova's [vnc] server_listen); empty: the proxies' address above
    libvirt_console_listen: str = ""
    libvirt_soft_reboot_timeout: int = 60  # seconds a SOFT reboot waits before rebooting HARD (Nova: 120)
    # VMware driver (credentials are never logged)
    vmware_host: str = ""
    vmware_port: int = 443
    vmware_protocol: str = "https"
    vmware_user: str = ""
    vmware_password: str = ""
    vmware_cluster: str = ""
    vmware_datastore: str = ""
    vmware_insecure: int = 0
    vmware_task_timeout: float = 300.0
    # Scheduler
    max_attempts: int = 3
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    # Weigher multipliers (Nova's [filter_scheduler] options): RAM > 0 spreads, < 0 stacks, 0 ignores free RAM.
    ram_weight_multiplier: float = 1.0
    # Server-group weighers. Weights are normalised per weigher, so with equal
    # multipliers the RAM weigher's spreading can cancel soft-affinity on identical hosts: raise this to prefer it.
    soft_affinity_weight_multiplier: float = 1.0
    soft_anti_affinity_weight_multiplier: float = 1.0
    # Default quotas (Nova's defaults)
    quota_instances: int = 10
    quota_cores: int = 20
    quota_ram: int = 51200
    quota_key_pairs: int = 100
    quota_metadata_items: int = 128
    quota_injected_files: int = 5
    quota_injected_file_content_bytes: int = 10240
    quota_injected_file_path_length: int = 255
    quota_server_groups: int = 10
    quota_server_group_members: int = 10
    # Seconds a deleted server stays SOFT_DELETED (restorable) before a periodic task reclaims it; 0: delete now.
    reclaim_instance_interval: int = 0
    # Seconds a SHELVED server keeps its host before it is offloaded; 0: at once (Nova's default), -1: never.
    shelved_offload_time: int = 0
    # Resize may pick the server's own host (Nova's allow_resize_to_same_host; it then holds both flavors'
    # resources until the resize is confirmed or reverted).
    allow_resize_to_same_host: bool = False
    # Limits
    max_request_body: int = 1 << 20
    max_image_size: int = 1 << 34
    # Image import's web-download fetches only from these hosts (comma-separated; "host" means ports 80 and 443,
    # "host:port" that port): Glance's [import_filtering_opts] allowed_hosts, but empty means no host at all, so
    # the API never fetches an arbitrary URL unless the operator allowed it.
    image_import_allowed_hosts: str = ""
    # A directory of metadata definition namespaces (Glance's etc/metadefs/*.json format) served read-only by
    # GET /image/v2/metadefs/...; empty: an empty catalog.
    metadefs_dir: str = ""
    log_level: str = "INFO"
    # oslo.policy-style YAML file overriding the default rules by name (empty: the defaults only)
    policy_file: str = ""
    # Browser consoles (proxies/): token lifetime, the URLs handed to clients, the proxies' listen ports
    console_token_ttl: int = 600
    novncproxy_base_url: str = "http://127.0.0.1:6080/vnc_auto.html"
    html5proxy_base_url: str = "http://127.0.0.1:6082/spice_auto.html"
    novncproxy_port: int = 6080
    spicehtml5proxy_port: int = 6082
    console_proxy_listen: str = "127.0.0.1"
    console_allowed_origins: str = ""  # comma-separated host names; empty: the base URLs' hosts
    console_ssl_cert: str = ""  # both set: the proxies serve https/wss only
    console_ssl_key: str = ""
    # SPICE opens one WebSocket per channel: after the main channel consumed a token, the same client may open
    # the session's other channels with it for this many seconds.
    console_spice_channel_window: int = 30
    # Serial consoles (Nova's [serial_console]): each guest's first serial port is a TCP listener on
    # libvirt_console_listen, a port of this range (start:stop, stop excluded) per host, logged to console.log;
    # the serial proxy (6083) turns a WebSocket into that TCP stream. Off: a pty (still logged) and the API answers
    # 400 "Unavailable console type serial." as Nova does with [serial_console] enabled = False.
    serial_console_enabled: bool = True
    serial_port_range: str = "10000:20000"
    serial_base_url: str = "ws://127.0.0.1:6083/"
    serialproxy_port: int = 6083
    novnc_web: str = "/usr/share/novnc"  # web client files (Debian packages novnc, spice-html5)
    spicehtml5_web: str = "/usr/share/spice-html5"

    # -- derived values -------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL; PostgreSQL without a named driver is psycopg 3 (server-side prepared statements)."""
        url = self.database_url or f"sqlite:///{self.state_path / 'stratus.sqlite'}"
        scheme, sep, rest = url.partition("://")
        return f"postgresql+psycopg://{rest}" if sep and scheme in ("postgresql", "postgres") else url

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def celery_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        url = self.celery_broker_url
        if url.startswith(("redis://", "rediss://")):
            return url
        if url.startswith(("amqp://", "amqps://", "pyamqp://")):
            return "rpc://"
        return f"file://{self.state_path / 'results'}"

    @property
    def image_dir(self) -> Path:
        return self.state_path / "images"

    @property
    def instances_dir(self) -> Path:
        return Path(self.instances_path).resolve() if self.instances_path else self.state_path / "instances"

    @property
    def host_names(self) -> list[str]:
        names = [h.strip() for h in self.compute_hosts.split(",") if h.strip()]
        return names or [os.uname().nodename]


def _coerce(field: dataclasses.Field, raw: object) -> object:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "int":
        return int(raw)  # type: ignore[arg-type]
    if kind == "float":
        return float(raw)  # type: ignore[arg-type]
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise ValueError(f"{field.name} must be true or false, not {raw!r}")
        return text in ("1", "true", "yes", "on")
    return str(raw)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    config_file = env.get("STRATUS_CONFIG")
    if config_file:
        with open(config_file, "rb") as fh:
            values.update(tomllib.load(fh))
    for field in dataclasses.fields(Settings):
        key = f"STRATUS_{field.name.upper()}"
        if key in env:
            values[field.name] = env[key]
    known = {f.name: f for f in dataclasses.fields(Settings)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown Stratus settings: {', '.join(sorted(unknown))}")
    settings = Settings(**{k: _coerce(known[k], v) for k, v in values.items()})
    if not 4 <= settings.password_hash_rounds <= 31:
        raise ValueError(f"password_hash_rounds must be 4 to 31 (bcrypt's range), not {settings.password_hash_rounds}")
    if settings.lockout_failure_attempts < 0 or settings.lockout_duration < 0:
        raise ValueError("lockout_failure_attempts and lockout_duration must be 0 (off) or more")
    return settings


@functools.cache
def get_settings() -> Settings:
    return load_settings()
