"""Guests on any host (issue 25 item 3): the address a compute host reports, where its guests' VNC/SPICE servers
listen, and where the console proxies connect for them (Nova's my_ip, [vnc] server_listen and
server_proxyclient_address)."""
from __future__ import annotations

import uuid

import pytest

from core.settings import Settings
from drivers import fake_factory
from drivers.base import ImageSpec, InstanceSpec, console_address, console_endpoint_host, console_listen
from drivers.libvirt import config


def _detected() -> str:
    return "192.0.2.10"


@pytest.mark.parametrize("values,address,listen", [
    ({}, "127.0.0.1", "127.0.0.1"),  # one machine: nothing leaves the loopback (Nova's defaults)
    ({"my_ip": "10.0.0.5"}, "10.0.0.5", "10.0.0.5"),  # a compute on another machine: one setting
    ({"my_ip": "10.0.0.5", "console_proxyclient_address": "172.16.0.5"}, "172.16.0.5", "172.16.0.5"),
    ({"my_ip": "10.0.0.5", "libvirt_console_listen": "0.0.0.0"}, "10.0.0.5", "0.0.0.0"),
])
def test_console_address_and_listen(values, address, listen):
    cfg = Settings(**values)
    assert console_address(cfg) == address
    assert console_listen(cfg) == listen


@pytest.mark.parametrize("values,listen,host", [
    ({}, "127.0.0.1", "127.0.0.1"),
    ({"my_ip": "10.0.0.5"}, "10.0.0.5", "10.0.0.5"),
    ({"my_ip": "10.0.0.5"}, "0.0.0.0", "10.0.0.5"),  # a wildcard is reached at the host's address, not localhost
    ({}, "::", "192.0.2.10"),  # ... detected when my_ip is unset
    ({"console_proxyclient_address": "172.16.0.5"}, "0.0.0.0", "172.16.0.5"),
    ({"console_proxyclient_address": "172.16.0.5"}, "10.0.0.5", "172.16.0.5"),  # NAT: the explicit address wins
    ({"my_ip": "10.0.0.5"}, "127.0.0.1", "127.0.0.1"),  # a domain defined before my_ip was set listens there
])
def test_console_endpoint_host(values, listen, host):
    assert console_endpoint_host(listen, Settings(**values), _detected) == host


def test_libvirt_domain_listens_on_the_console_address():
    image = ImageSpec(id="img", disk_format="qcow2", container_format="bare", size=1, checksum=None, properties={},
                      path="/dev/null")
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vm", hostname="vm", project_id="p", user_id="u", vcpus=1,
                        memory_mb=64, root_gb=1, flavor_name="f", flavor_id="1", image=image)
    listen = console_listen(Settings(my_ip="10.0.0.5"))
    paths = config.DiskPaths(disk=f"/tmp/{spec.uuid}/disk", console_log=f"/tmp/{spec.uuid}/console.log")
    xml = config.domain_xml(spec, paths, "qemu", listen=listen)
    assert 'listen="10.0.0.5"' in xml and 'address="10.0.0.5"' in xml and "127.0.0.1" not in xml
    # What get_console reads back from the live domain (with the port libvirt assigned).
    live = xml.replace('port="-1"', 'port="5917"')
    assert config.graphics_port(live, "vnc") == ("10.0.0.5", 5917)


def test_fake_driver_reports_my_ip_and_names_it_for_consoles(tmp_path):
    host = f"addr-{uuid.uuid4().hex[:6]}"
    drv = fake_factory.make(host, Settings(state_dir=str(tmp_path), fake_persist=0, my_ip="127.0.0.3",
                                           fake_console_port=5999))
    assert drv.get_available_resource().host_ip == "127.0.0.3"
    image = ImageSpec(id="img", disk_format="raw", container_format="bare", size=1, checksum=None, properties={},
                      path="/dev/null")
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vm", hostname="vm", project_id="p", user_id="u", vcpus=1,
                        memory_mb=64, root_gb=1, flavor_name="f", flavor_id="1", image=image)
    drv.build_disk(spec)
    drv.spawn(spec)
    endpoint = drv.get_console(spec.uuid, "vnc")
    assert (endpoint.host, endpoint.port) == ("127.0.0.3", 5999)
    default = fake_factory.make(f"{host}-d", Settings(state_dir=str(tmp_path), fake_persist=0))
    assert default.get_available_resource().host_ip == "127.0.0.1"
