"""Where the CPU went during a measurement: each host's processes, and the whole
machine (which three other sessions share with this one)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from tests.scale.network import Host

TICK = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float:
    """User and system time of ``pid`` and of its children it has waited for (a
    PostgreSQL backend that ended counts in the postmaster's)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the command name: state is field 3, utime..cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15]) / TICK


def host_seconds(hosts: Iterable[Host]) -> dict[str, float]:
    return {host.name: sum(_process_seconds(pid) for pid in host.pids()) for host in hosts}


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of every core since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


@dataclass(frozen=True)
class CpuSample:
    hosts: dict[str, float]
    machine: tuple[float, float]

    @classmethod
    def take(cls, hosts: Iterable[Host]) -> CpuSample:
        return cls(host_seconds(hosts), machine_busy_seconds())


def cores_used(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """Cores each host kept busy over ``seconds``, the harness's total, and the whole
    machine's (everything on it, other sessions included)."""
    used = {
        name: round((after.hosts[name] - before.hosts.get(name, 0.0)) / seconds, 2)
        for name in after.hosts
    }
    used["harness"] = round(sum(used.values()), 2)
    used["machine"] = round((after.machine[0] - before.machine[0]) / seconds, 2)
    return used
