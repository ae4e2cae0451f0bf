"""/os-instance_usage_audit_log: the state of the instance usage audit of the last completed audit period on each
compute host (admin; Nova's instance_usage_audit_log controller).

Nova's hosts write a task log when its periodic audit (``instance_usage_audit``, off by default) runs; Stratus does
not run that audit, so no host has a log for any period and every compute host is reported as not run, as Nova
reports it with the audit off. The period is Nova's default ``instance_usage_audit_period`` (a month)."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify
from sqlalchemy import select

from app.policy import enforce
from core.db import read_session
from core.errors import bad_request
from core.models import Service

bp = Blueprint("usage_audit_log", __name__)


def last_completed_month(before: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Nova's utils.last_completed_audit_period('month', before): the month that ended last before ``before``."""
    now = before or dt.datetime.utcnow()
    end = dt.datetime(now.year, now.month, 1)
    if end >= now:
        end = dt.datetime(now.year - 1, 12, 1) if now.month == 1 else dt.datetime(now.year, now.month - 1, 1)
    begin = dt.datetime(end.year - 1, 12, 1) if end.month == 1 else dt.datetime(end.year, end.month - 1, 1)
    return begin, end


def _report(before: dt.datetime | None = None) -> dict:
    begin, end = last_completed_month(before)
    with read_session() as s:  # disabled compute services too: they can have instances
        hosts = sorted(set(s.scalars(select(Service.host).where(Service.topic == "compute"))))
    # No host ran the audit for the period: none done, none running, every one not run, nothing counted.
    done_text = "ALL" if not hosts else f"0 of {len(hosts)}"
    return {"period_beginning": str(begin), "period_ending": str(end), "num_hosts": len(hosts),
            "num_hosts_done": 0, "num_hosts_running": 0, "num_hosts_not_run": len(hosts), "hosts_not_run": hosts,
            "total_instances": 0, "total_errors": 0, "overall_status": f"{done_text} hosts done. 0 errors.",
            "log": {}}

@bp.get("/os-instance_usage_audit_log")
@enforce("admin_api")
def list_audit_logs():
    return jsonify({"instance_usage_audit_logs": _report()})


@bp.get("/os-instance_usage_audit_log/<before_timestamp>")
@enforce("admin_api")
def show_audit_log(before_timestamp: str):
    try:
        before = dt.datetime.strptime(before_timestamp, "%Y-%m-%d %H:%M:%S.%f" if "." in before_timestamp
                                      else "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise bad_request(f"Invalid timestamp for date {before_timestamp}") from None
    return jsonify({"instance_usage_audit_log": _report(before)})
