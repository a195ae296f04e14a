"""Memory of a process and its children, read from /proc (Linux)."""

from __future__ import annotations

import os


def _field_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except FileNotFoundError:
        return 0
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name (2nd field) may hold spaces: ppid follows its ')'.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def rss_mb(pid: int) -> float:
    return _field_kb(pid, "VmRSS:") / 1024


def peak_rss_mb(pid: int) -> float:
    return _field_kb(pid, "VmHWM:") / 1024


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it."""
    return rss_mb(pid) + sum(tree_rss_mb(child) for child in children(pid))


def tree_peak_rss_mb(pid: int) -> float:
    """The largest peak of ``pid`` or any process below it."""
    return max([peak_rss_mb(pid), *(tree_peak_rss_mb(child) for child in children(pid))])
