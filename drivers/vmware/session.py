"""A vSphere API session for the VMware driver (pyVmomi).

What this module owns:

* connecting with the settings' host/port/protocol/user/password (the password is never logged or put into an
  exception message),
* re-login when vCenter drops the session (``vim.fault.NotAuthenticated``): the call is retried once,
* waiting for tasks with a deadline (``vmware_task_timeout``),
* PropertyCollector retrieval (``RetrievePropertiesEx`` + ``ContinueRetrievePropertiesEx``),
* turning vSphere faults into ``DriverError`` / ``HostLocalError`` with the vSphere message.
"""
from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Any, Callable, Iterable, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from drivers.base import DriverError, HostLocalError

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: Faults that are specific to this vCenter/cluster: another host may well succeed.
_HOST_LOCAL_FAULTS: tuple[type, ...] = (
    vim.fault.InsufficientResourcesFault,
    vim.fault.NoDiskSpace,
    vim.fault.FileFault,
    vim.fault.HostConnectFault,
    vim.fault.NoCompatibleHost,
)


def fault_name(fault: BaseException) -> str:
    name = getattr(fault, "_wsdlName", None) or type(fault).__name__
    return str(name).rsplit(".", 1)[-1]


def fault_message(fault: BaseException) -> str:
    """The vSphere message of a fault (``msg`` / ``localizedMessage`` / fault messages), plus its type."""
    parts: list[str] = []
    msg = getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None)
    # vcsim puts the Go type name ("*types.InvalidPowerState") where vCenter puts a sentence: not useful.
    if msg and not str(msg).startswith("*types."):
        parts.append(str(msg).strip())
    for fm in getattr(fault, "faultMessage", None) or []:
        text = getattr(fm, "message", None)
        if text and text not in parts:
            parts.append(str(text))
    name = fault_name(fault)
    if isinstance(fault, vim.fault.InvalidPowerState):
        parts.append(f"requested {fault.requestedState}, existing {fault.existingState}")
    if isinstance(fault, vmodl.fault.ManagedObjectNotFound) and getattr(fault, "obj", None) is not None:
        parts.append(f"object {fault.obj._moId} not found")
    if isinstance(fault, vim.fault.DuplicateName):
        parts.append(f"duplicate name {fault.name!r}")
    text = "; ".join(parts)
    return f"{text} ({name})" if text else name


def to_driver_error(fault: BaseException, action: str) -> DriverError:
    cls = HostLocalError if isinstance(fault, _HOST_LOCAL_FAULTS) else DriverError
    err = cls(f"vSphere {action} failed: {fault_message(fault)}")
    err.vsphere_fault = fault_name(fault)  # type: ignore[attr-defined]
    return err


class VSphereSession:
    """One logged-in connection to vCenter, shared by a driver's calls (thread-safe re-login)."""

    def __init__(self, host: str, port: int, user: str, password: str, protocol: str = "https",
                 insecure: bool = False, task_timeout: float = 300.0, connect_timeout: float = 30.0):
        self.host, self.port, self.user = host, int(port), user
        self.__password = password
        self.protocol = protocol or "https"
        self.insecure = bool(insecure)
        self.task_timeout = float(task_timeout)
        self.connect_timeout = connect_timeout
        self._si: vim.ServiceInstance | None = None
        self._lock = threading.RLock()
        #: Bumped on every (re)login; callers use it to drop caches bound to a session (views).
        self.generation = 0

    # -- connection ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}/sdk"

    def __repr__(self) -> str:  # never show the password
        return f"<VSphereSession {self.user}@{self.url}>"

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.protocol != "https":
            return None
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect(self) -> vim.ServiceInstance:
        with self._lock:
            if self._si is None:
                self._si = self._login_new()
                self.generation += 1
            return self._si

    def _login_new(self) -> vim.ServiceInstance:
        if not self.host:
            raise DriverError("VMware driver: vmware_host is not set")
        if not self.user:
            raise DriverError("VMware driver: vmware_user is not set")
        LOG.info("Connecting to vCenter %s as %s", self.url, self.user)
        try:
            si = SmartConnect(protocol=self.protocol, host=self.host, port=self.port, user=self.user,
                              pwd=self.__password, sslContext=self._ssl_context(),
                              httpConnectionTimeout=self.connect_timeout,
                              disableSslCertValidation=self.insecure)
        except vim.fault.InvalidLogin as exc:
            raise DriverError(
                f"VMware login to {self.url} as user {self.user!r} failed: {fault_message(exc)}. "
                f"Check vmware_user and vmware_password.") from None
        except vmodl.MethodFault as exc:
            raise HostLocalError(f"VMware login to {self.url} as user {self.user!r} failed: "
                                 f"{fault_message(exc)}") from None
        except (OSError, ssl.SSLError) as exc:
            raise HostLocalError(f"Cannot connect to vCenter at {self.url}: {exc}") from None
        except Exception as exc:  # pyVmomi raises assorted http.client errors
            raise HostLocalError(f"Cannot connect to vCenter at {self.url}: {type(exc).__name__}: {exc}") \
                from None
        return si

    def relogin(self, stale: vim.ServiceInstance | None) -> vim.ServiceInstance:
        """Log in again (once per stale session, however many threads noticed it)."""
        with self._lock:
            if self._si is not None and self._si is not stale:
                return self._si  # another thread already did it
            LOG.warning("vCenter session for %s@%s is no longer authenticated; logging in again",
                        self.user, self.url)
            old, self._si = self._si, None
            if old is not None:
                try:
                    Disconnect(old)
                except Exception:  # the session is gone anyway
                    pass
            return self.connect()

    def close(self) -> None:
        with self._lock:
            si, self._si = self._si, None
        if si is not None:
            try:
                Disconnect(si)
            except Exception:
                pass

    @property
    def si(self) -> vim.ServiceInstance:
        return self.connect()

    @property
    def content(self) -> vim.ServiceInstanceContent:
        return self.si.RetrieveContent()

    @property
    def cookie(self) -> str:
        return self.si._stub.cookie  # "vmware_soap_session=...": for /folder HTTP transfers

    def invoke(self, fn: Callable[[vim.ServiceInstance], T], action: str) -> T:
        """Run ``fn(si)``; on NotAuthenticated log in again and run it once more; faults -> DriverError."""
        si = self.connect()
        try:
            try:
                return fn(si)
            except vim.fault.NotAuthenticated:
                si = self.relogin(si)
                return fn(si)
        except DriverError:
            raise
        except vmodl.MethodFault as exc:
            raise to_driver_error(exc, action) from None

    # -- tasks --------------------------------------------------------------------------------------------
    def wait_for_task(self, task: vim.Task, action: str, timeout: float | None = None) -> Any:
        """Wait for a task to finish and return its result; raise the task's fault as a vSphere fault."""
        deadline = time.monotonic() + (self.task_timeout if timeout is None else timeout)
        delay = 0.02
        while True:
            info = task.info
            if info.state == vim.TaskInfo.State.success:
                return info.result
            if info.state == vim.TaskInfo.State.error:
                err = info.error
                if isinstance(err, BaseException):
                    raise err
                raise DriverError(f"vSphere {action} failed: {err}")
            if time.monotonic() >= deadline:
                try:
                    if info.cancelable:
                        task.CancelTask()
                except vmodl.MethodFault:
                    pass
                raise HostLocalError(f"vSphere {action} (task {task._moId}) did not finish within "
                                     f"{timeout if timeout is not None else self.task_timeout:g} s")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    # -- PropertyCollector --------------------------------------------------------------------------------
    @staticmethod
    def retrieve(si: vim.ServiceInstance, object_specs: Iterable[vmodl.query.PropertyCollector.ObjectSpec],
                 prop_specs: Iterable[vmodl.query.PropertyCollector.PropertySpec]) -> list[tuple[Any, dict]]:
        """One RetrievePropertiesEx (+ continuations): [(managed object, {path: value})]."""
        pc = si.content.propertyCollector
        spec = vmodl.query.PropertyCollector.FilterSpec(objectSet=list(object_specs), propSet=list(prop_specs))
        options = vmodl.query.PropertyCollector.RetrieveOptions()
        out: list[tuple[Any, dict]] = []
        result = pc.RetrievePropertiesEx(specSet=[spec], options=options)
        while result is not None:
            for oc in result.objects or []:
                out.append((oc.obj, {p.name: p.val for p in (oc.propSet or [])}))
            token = result.token
            result = pc.ContinueRetrievePropertiesEx(token=token) if token else None
        return out

    @staticmethod
    def properties(si: vim.ServiceInstance, obj: Any, paths: list[str]) -> dict:
        """The given properties of one managed object in one round trip."""
        os_ = vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)
        ps = vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=paths)
        rows = VSphereSession.retrieve(si, [os_], [ps])
        return rows[0][1] if rows else {}
