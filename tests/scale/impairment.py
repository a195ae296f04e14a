"""A slow, lossy network on one host's link, without ``tc netem``.

This machine's kernel has no netem (nor fq, for timed departures): its only queueing
disciplines are HTB, TBF, pfifo and ingress. So the two halves of
``netem delay 50ms loss 5%`` are built from what it has:

* Loss, in the kernel: an HTB root on the host's ``eth0`` whose classifier, a classic
  BPF program, sends a random 5 % of the outgoing packets to a class whose queue holds
  nothing (``pfifo limit 0``), which drops them. TCP retransmits them as it would any
  lost packet, after its retransmission timeout (200 ms at least).
* Delay: a delay line (``tests/scale/delay_line.py``) on the host, through which its
  worker reaches PostgreSQL and Redis: every byte the host sends is held 50 ms, what
  comes back is not, as netem on the host's egress does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.scale.network import Host

ROOT = Path(__file__).resolve().parents[2]
DROP_CLASS = 0x10020  # 1:20
SKF_AD_RANDOM = 0xFFFFF000 + 56  # classic BPF: load a random 32-bit number


def _drop_program(percent: int) -> str:
    """``A = random % 100; if A >= percent: no match (the default class) else 1:20``,
    in tc's ``bytecode`` syntax: count, then (code jt jf k) per instruction."""
    instructions = [
        (0x20, 0, 0, SKF_AD_RANDOM),  # ld  [random]
        (0x94, 0, 0, 100),  # mod #100
        (0x35, 1, 0, percent),  # jge #percent -> skip the next one
        (0x06, 0, 0, DROP_CLASS),  # ret #1:20
        (0x06, 0, 0, 0),  # ret #0: no match
    ]
    return ",".join([str(len(instructions))] + [" ".join(map(str, i)) for i in instructions])


def _tc(host: Host, *argv: str) -> None:
    subprocess.run(
        ["tc", "-n", host.namespace, *argv], capture_output=True, text=True, check=True, timeout=30
    )


def lose_packets(host: Host, percent: int) -> None:
    """Drop ``percent`` % of what ``host`` sends, at random."""
    dev = ("dev", "eth0")
    _tc(host, "qdisc", "add", *dev, "root", "handle", "1:", "htb", "default", "10")
    # Rates far above what the link carries here: HTB only sorts, it never holds back.
    for leaf in ("1:10", "1:20"):
        _tc(host, "class", "add", *dev, "parent", "1:", "classid", leaf, "htb", "rate", "10gbit")
    _tc(host, "qdisc", "add", *dev, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0")
    _tc(host, "filter", "add", *dev, "parent", "1:", "bpf", "bytecode", _drop_program(percent))


def packets_dropped(host: Host) -> int:
    """How many packets the loss has dropped so far."""
    shown = subprocess.run(
        ["tc", "-n", host.namespace, "-s", "qdisc", "show", "dev", "eth0", "parent", "1:20"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    words = shown.replace("(", " ").replace(",", " ").split()
    return int(words[words.index("dropped") + 1]) if "dropped" in words else 0


def restore(host: Host) -> None:
    subprocess.run(
        ["tc", "-n", host.namespace, "qdisc", "del", "dev", "eth0", "root"],
        capture_output=True,
        check=False,
        timeout=30,
    )


@contextmanager
def delay_line(host: Host, delay: float, routes: Mapping[int, str]) -> Iterator[None]:
    """Relays on ``host``'s 127.0.0.1:<port> to ``routes[port]`` ("address:port"),
    holding what the host sends ``delay`` seconds, for as long as the block runs."""
    argv = [
        *host.launcher(),
        sys.executable,
        "-m",
        "tests.scale.delay_line",
        f"--delay={delay}",
        *(f"{port}={target}" for port, target in routes.items()),
    ]
    relay = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline().strip() == "relaying", "the delay line did not start"
        yield
    finally:
        relay.terminate()
        relay.wait(timeout=10)
