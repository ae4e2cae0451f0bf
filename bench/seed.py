"""Insert servers straight into a Stratus DB (for the API read benchmark and the query-count test).

Each server gets what GET /servers/detail renders: a flavor snapshot, metadata, a fixed IP on the built-in
network, a host with a compute service; every 10th server is in ERROR with two faults (the newest is shown).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import uuid as uuidlib

from sqlalchemy import func, insert, select


def seed_servers(session, project_id: str, user_id: str, count: int, hosts: int = 10, start: int = 0) -> list[str]:
    from core import network
    from core.models import ComputeNode, FixedIP, Flavor, Instance, InstanceFault, Network, Service

    flavor = session.scalars(select(Flavor).order_by(Flavor.id)).first()
    if flavor is None:
        flavor = Flavor(flavorid="42", name="m1.nano", memory_mb=128, root_gb=1, vcpus=1)
        session.add(flavor)
        session.flush()
    info = network.builtin()
    if session.get(Network, info.id) is None:
        session.add(Network(id=info.id, name=info.name, cidr=info.cidr, gateway=info.gateway, bridge=info.bridge))
    now = dt.datetime.utcnow()
    existing_hosts = set(session.scalars(select(Service.host)))
    for h in range(hosts):
        name = f"seed-host-{h}"
        if name in existing_hosts:
            continue
        svc = Service(host=name, binary="nova-compute", topic="compute", last_seen_at=now, updated_at=now)
        session.add(svc)
        session.flush()
        session.add(ComputeNode(service_id=svc.id, host=name, hypervisor_hostname=name, hypervisor_type="fake",
                                vcpus=16, memory_mb=32768, local_gb=512, updated_at=now))
    snapshot = {"id": flavor.flavorid, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.memory_mb,
                "disk": flavor.root_gb, "ephemeral": 0, "swap": 0, "extra_specs": {}}
    net = ipaddress.ip_network(info.cidr)
    used = session.scalar(select(func.count()).select_from(FixedIP)) or 0
    base = int(net.network_address) + 2 + used
    uuids, rows, ips, faults = [], [], [], []
    for i in range(start, start + count):
        uid = str(uuidlib.uuid4())
        uuids.append(uid)
        error = i % 10 == 9
        rows.append(dict(
            uuid=uid, display_name=f"seed-{i}", hostname=f"seed-{i}", project_id=project_id, user_id=user_id,
            image_ref=str(uuidlib.uuid4()), flavor_id=flavor.id, flavor_snapshot=snapshot, vcpus=1, memory_mb=128,
            root_gb=1, vm_state="error" if error else "active", task_state=None, power_state=0 if error else 1,
            host=f"seed-host-{i % hosts}", node=f"seed-host-{i % hosts}", availability_zone="nova",
            config_drive="", metadata_items={"k": str(i)}, scheduler_hints={}, networks_request="auto", reservation_id=f"r-{i:08x}",
            launched_at=now, created_at=now - dt.timedelta(seconds=count - i), updated_at=now, deleted=0))
        ips.append(dict(network_id=info.id, address=str(ipaddress.ip_address(base + len(ips))),
                        mac=f"fa:16:{(base + len(ips)) >> 24 & 255:02x}:{(base + len(ips)) >> 16 & 255:02x}:"
                            f"{(base + len(ips)) >> 8 & 255:02x}:{(base + len(ips)) & 255:02x}",
                        instance_uuid=uid, created_at=now))
        if error:
            for n in range(2):
                faults.append(dict(instance_uuid=uid, code=500, message=f"fault {n}", details="trace",
                                   host=f"seed-host-{i % hosts}", created_at=now))
    for chunk in range(0, len(rows), 2000):
        session.execute(insert(Instance), rows[chunk:chunk + 2000])
        session.execute(insert(FixedIP), ips[chunk:chunk + 2000])
    if faults:
        session.execute(insert(InstanceFault), faults)
    return uuids
