"""Hosts on this machine: Linux network namespaces on one bridge.

A ``switch`` namespace holds the bridge; each host is a namespace of its own with one
veth link to it (``eth0`` on the host, ``port-<host>`` on the switch) and an address on
a private /24. Nothing is added to the machine's own namespace, so the subnet cannot
clash with anything, and every namespace is named with the run's prefix so that two
runs cannot collide. ``Network.remove`` deletes them all (their veths go with them).

Cutting a host's link takes the switch's end down, as a switch port or cable fails: the
host's own interface stays up and nothing on it is told.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    switch: str = field(repr=False)

    @property
    def port(self) -> str:
        """The switch's end of the host's link (15 characters at most, as Linux wants)."""
        return f"port-{self.name}"[:15]

    def launcher(self) -> tuple[str, ...]:
        """What a command line runs under to run on this host."""
        return ("ip", "netns", "exec", self.namespace)

    def cut(self) -> None:
        ip("-n", self.switch, "link", "set", self.port, "down")

    def reconnect(self) -> None:
        ip("-n", self.switch, "link", "set", self.port, "up")

    def pids(self) -> list[int]:
        """Every process on this host (``ip netns pids``)."""
        listed = ip("netns", "pids", self.namespace, check=False).stdout.split()
        return [int(pid) for pid in listed]

    def signal_all(self, signum: signal.Signals) -> int:
        sent = 0
        for pid in self.pids():
            try:
                os.kill(pid, signum)
                sent += 1
            except ProcessLookupError:
                pass  # ended since it was listed
        return sent

    def freeze(self) -> int:
        """SIGSTOP every process on the host: it keeps its connections and answers none."""
        return self.signal_all(signal.SIGSTOP)

    def thaw(self) -> int:
        return self.signal_all(signal.SIGCONT)


class Network:
    """The switch and the hosts, built by ``create`` and removed by ``remove``."""

    def __init__(self, prefix: str, names: Sequence[str]) -> None:
        self.prefix = prefix
        self.switch = f"{prefix}-switch"
        self.hosts = {
            name: Host(name, f"{prefix}-{name}", f"{SUBNET}.{index + 2}", self.switch)
            for index, name in enumerate(names)
        }
        self._made: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def create(self) -> Network:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_namespace(host.namespace)
            ip("-n", host.namespace, "link", "set", "lo", "up")
            ip(
                *("-n", self.switch, "link", "add", host.port, "type", "veth"),
                *("peer", "name", "eth0", "netns", host.namespace),
            )
            ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)

    def remove(self) -> list[str]:
        """Kill whatever still runs on the hosts, delete every namespace; returns what
        could not be deleted (nothing, normally)."""
        for host in self.hosts.values():
            if host.namespace in self._made:
                host.thaw()  # a stopped process would not die of SIGTERM, but does of SIGKILL
                host.signal_all(signal.SIGKILL)
        left = []
        for name in reversed(self._made):
            if ip("netns", "del", name, check=False).returncode != 0:
                left.append(name)
        self._made = left
        return left


@contextmanager
def inside(host: Host) -> Iterator[None]:
    """Run the calling thread on ``host``'s network (setns): the sockets it opens, the
    threads and processes it starts, are that host's. Back where it was afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{host.namespace}") as there:
        _setns(libc, there.fileno())
        try:
            yield
        finally:
            _setns(libc, home.fileno())


def _setns(libc: ctypes.CDLL, fd: int) -> None:
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")
