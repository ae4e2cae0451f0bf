"""Serial console (issue 29 item 5): the libvirt domain's TCP serial port, port allocation per host, the fake
driver's listener, and the API's bodies and errors per microversion (the compute step runs in-process)."""
from __future__ import annotations

import socket
import uuid
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from drivers import serial_ports
from drivers.libvirt import config
from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_fake_console import booted, spec

PATHS = config.DiskPaths(disk="/i/disk", console_log="/i/console.log")


def _serial(xml: str) -> ET.Element:
    (dev,) = ET.fromstring(xml).findall("./devices/serial")
    return dev


def test_domain_xml_serial_port_is_a_logged_tcp_listener_or_a_pty():
    xml = config.domain_xml(spec(), PATHS, "qemu", serial=("127.0.0.1", 10007))
    dev = _serial(xml)
    assert dev.get("type") == "tcp"
    assert dev.find("source").attrib == {"mode": "bind", "host": "127.0.0.1", "service": "10007"}
    assert dev.find("protocol").get("type") == "raw"
    assert dev.find("log").attrib == {"file": "/i/console.log", "append": "on"}, "console log show keeps working"
    assert config.serial_listeners(xml) == [("127.0.0.1", 10007)]
    pty = config.domain_xml(spec(), PATHS, "qemu")
    assert _serial(pty).get("type") == "pty" and _serial(pty).find("log").get("file") == "/i/console.log"
    assert config.serial_listeners(pty) == []


def _free_range(n: int = 40) -> tuple[int, int]:
    """A range of ports nothing listens on now (from a free ephemeral port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + n < 65536 and all(serial_ports.bindable("127.0.0.1", p) for p in range(start, start + n)):
            return start, start + n
    pytest.skip("no free port range")


def test_port_allocation_skips_reserved_defined_and_bound_ports():
    start, stop = _free_range()
    rng = f"{start}:{stop}"
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    try:
        assert serial_ports.acquire("127.0.0.1", a, rng) == start
        assert serial_ports.acquire("127.0.0.1", a, rng) == start, "the same owner keeps its port"
        # start+1 is named by a defined (stopped) guest, start+2 is bound by another program
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", start + 2))
            busy.listen(1)
            assert serial_ports.acquire("127.0.0.1", b, rng, in_use={start + 1}) == start + 3
        serial_ports.release(a)
        assert serial_ports.held(a) == []
        assert serial_ports.acquire("127.0.0.1", c, rng) == start, "a released port is handed out again"
    finally:
        for owner in (a, b, c):
            serial_ports.release(owner)


def test_port_range_exhausted_and_invalid_ranges():
    start, _ = _free_range(2)
    owner = str(uuid.uuid4())
    try:
        serial_ports.acquire("127.0.0.1", owner, f"{start}:{start + 1}")
        with pytest.raises(serial_ports.PortRangeExhausted, match="Not able to acquire a free port for 127.0.0.1"):
            serial_ports.acquire("127.0.0.1", "other", f"{start}:{start + 1}")
    finally:
        serial_ports.release(owner)
    assert serial_ports.parse_range("20:10") == (10000, 20000)  # Nova: the default, with a warning
    assert serial_ports.parse_range("x") == (10000, 20000)
    assert serial_ports.parse_range("10:20") == (10, 20)


def _read_until(conn: socket.socket, needle: bytes) -> bytes:
    data = b""
    while needle not in data:
        chunk = conn.recv(4096)
        assert chunk, data[-300:]
        data += chunk
    return data


def test_fake_serial_port_serves_the_console_and_echoes_until_the_guest_is_destroyed():
    start, stop = _free_range()
    driver, clock, s = booted()
    driver.serial_port_range = f"{start}:{stop}"
    clock.now += 60  # the boot has reached its login prompt
    endpoint = driver.get_console(s.uuid, "serial")
    assert (endpoint.host, endpoint.kind) == ("127.0.0.1", "serial") and start <= endpoint.port < stop
    assert driver.get_console(s.uuid, "serial") == endpoint, "one listener per guest"
    with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as conn:
        screen = _read_until(conn, b"web-1 login: ")
        assert b"\r\nDebian GNU/Linux 12 web-1 ttyS0\r\n" in screen
        conn.sendall(b"root\r")
        assert _read_until(conn, b"root\r\n")
    driver.destroy(s.uuid)
    with pytest.raises(OSError):
        socket.create_connection((endpoint.host, endpoint.port), timeout=2).close()
    assert serial_ports.held(f"{driver.host}/{s.uuid}") == []


def test_fake_serial_port_streams_what_the_guest_prints_after_the_client_connected():
    """A client connected during the boot sees the login prompt when the guest prints it, as on a serial line
    (the CI run found a client that connected early waiting for ever)."""
    start, stop = _free_range()
    driver, clock, s = booted()
    driver.serial_port_range = f"{start}:{stop}"
    endpoint = driver.get_console(s.uuid, "serial")  # at once: the boot has not reached its prompt yet
    with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as conn:
        _read_until(conn, b"\r\n")
        clock.now += 60  # the boot goes on while the client is connected
        assert b"web-1 login: " in _read_until(conn, b"web-1 login: ")
    driver.destroy(s.uuid)


# --- the API ----------------------------------------------------------------------------------------------------

@pytest.fixture
def on_fake_host(world, monkeypatch):
    """world's server ACTIVE on a fake host whose get_console step runs in-process; returns the driver."""
    from core import db
    from core.errors import ApiError
    from core.models import Instance
    from tasks import compute
    from tasks.messaging import rpc

    driver, _, _ = booted(uuid_=world.server_id)
    with db.write_session() as s:
        s.execute(sa.update(Instance).where(Instance.uuid == world.server_id).values(
            host=driver.host, node=driver.host, vm_state="active"))
    monkeypatch.setattr(compute, "driver_for", lambda host: driver)
    in_process = rpc.call

    def call(task_name: str, *args, **kwargs):
        if task_name != "stratus.compute.get_console":
            return in_process(task_name, *args, **kwargs)
        assert kwargs.get("queue") == f"compute.{driver.host}"
        reply = compute.get_console(*args)
        if "error" in reply:
            raise ApiError(reply["error"]["code"], reply["error"]["message"])
        return reply["ok"]
    monkeypatch.setattr(rpc, "call", call)
    yield driver
    driver.destroy(world.server_id)


def _post(client, world, path: str, body: dict, version: str = "2.96"):
    return client.post(f"/v2.1/servers/{world.server_id}/{path}", json=body,
                       headers={**world.a.headers, "OpenStack-API-Version": f"compute {version}"})


def _token_row(url: str):
    from core.crypto import token_hash
    from core.db import read_session
    from core.models import ConsoleAuthToken
    token = url.split("?token=", 1)[1]
    with read_session() as s:
        return s.scalars(sa.select(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == token_hash(token))).one()


def test_serial_console_bodies_per_microversion(client, world, on_fake_host):
    port = on_fake_host.get_console(world.server_id, "serial").port
    for version in ("2.6", "2.96"):
        r = _post(client, world, "remote-consoles", {"remote_console": {"protocol": "serial", "type": "serial"}},
                  version)
        assert r.status_code == 200, r.get_data(as_text=True)
        body = r.get_json()
        assert set(body) == {"remote_console"} and set(body["remote_console"]) == {"protocol", "type", "url"}
        assert body["remote_console"]["protocol"] == body["remote_console"]["type"] == "serial"
        url = body["remote_console"]["url"]
        assert url.startswith("ws://127.0.0.1:6083/?token=")  # Nova's base_url + ?token=
        row = _token_row(url)
        assert (row.console_type, row.host, row.port, row.instance_uuid) == ("serial", "127.0.0.1", port,
                                                                             world.server_id)
    r = _post(client, world, "remote-consoles", {"remote_console": {"protocol": "serial", "type": "serial"}}, "2.5")
    assert r.status_code == 404
    r = _post(client, world, "action", {"os-getSerialConsole": {"type": "serial"}}, "2.1")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert set(r.get_json()) == {"console"} and r.get_json()["console"]["type"] == "serial"
    assert _token_row(r.get_json()["console"]["url"]).console_type == "serial"


@pytest.mark.parametrize("body", [{"remote_console": {"protocol": "serial", "type": "novnc"}},
                                  {"remote_console": {"protocol": "vnc", "type": "serial"}},
                                  {"remote_console": {"protocol": "serial"}},
                                  {"os-getSerialConsole": {"type": "novnc"}},
                                  {"os-getSerialConsole": {}}])
def test_bad_serial_console_requests_are_400(client, world, on_fake_host, body):
    r = _post(client, world, "action" if "os-getSerialConsole" in body else "remote-consoles", body)
    assert r.status_code == 400 and "badRequest" in r.get_json(), r.get_data(as_text=True)


def test_serial_console_turned_off_is_400_and_a_driver_without_it_501(client, world, on_fake_host, monkeypatch):
    """Nova: ConsoleTypeUnavailable (``[serial_console] enabled = False``) is 400; a driver that does not implement
    get_serial_console (VMware) 501."""
    from core.settings import get_settings
    body = {"remote_console": {"protocol": "serial", "type": "serial"}}
    monkeypatch.setenv("STRATUS_SERIAL_CONSOLE_ENABLED", "0")
    get_settings.cache_clear()
    try:
        r = _post(client, world, "remote-consoles", body)
    finally:
        monkeypatch.delenv("STRATUS_SERIAL_CONSOLE_ENABLED")
        get_settings.cache_clear()
    assert r.status_code == 400 and r.get_json()["badRequest"]["message"] == "Unavailable console type serial."
    vmware = pytest.importorskip("drivers.vmware.driver")
    assert not vmware.VMwareDriver.capabilities.get("supports_serial_console")
    monkeypatch.setattr(type(on_fake_host), "capabilities", vmware.VMwareDriver.capabilities)
    r = _post(client, world, "remote-consoles", body)
    assert r.status_code == 501 and "does not support serial consoles" in r.get_data(as_text=True)
