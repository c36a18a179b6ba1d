"""Separate "hosts" on one machine: network namespaces joined by a veth pair (Linux, root).

Each host has its own network stack (its own loopback, its own ports, one veth end with an
address in 10.231.0.0/16), so processes on two hosts talk only over the veth, as two machines
on a LAN do. The file system stays shared: a test gives each host a directory of its own and
never lets one host read the other's.

``make_hosts`` needs ``ip`` (iproute2) and the right to create namespaces (root, or
CAP_SYS_ADMIN); :class:`HostsUnavailable` says which is missing, so a test can skip for that
reason only. ``remove_hosts`` kills what still runs inside the namespaces and deletes them (the
veth pair goes with them); it is safe to call twice and after a half-made set-up.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

IP_TIMEOUT_S = 20  # one `ip` call; they take milliseconds


class HostsUnavailable(RuntimeError):
    """This machine (or user) cannot create network namespaces; the message says why."""


@dataclass(frozen=True)
class Host:
    netns: str  # the namespace's name
    ifname: str  # its end of the veth pair (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME)
    addr: str  # its address on the veth
    workdir: Path  # the host's own directory: its "disk"

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host's namespace (the environment is inherited)."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=check)


def check_can_make_hosts() -> None:
    """Raise :class:`HostsUnavailable` when namespaces cannot be made here (not root, no ``ip``)."""
    if shutil.which("ip") is None:
        raise HostsUnavailable("`ip` (iproute2) is not installed: network namespaces cannot be made")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise HostsUnavailable("network namespaces need root (or CAP_SYS_ADMIN); this runs as uid "
                               f"{os.geteuid()}")


def make_hosts(root: Path, count: int = 2) -> list[Host]:
    """``count`` hosts: namespaces with unique names, loopback up, joined by veth pairs to host 0.

    Addresses are 10.231.N.1, 10.231.N.2, ... with N drawn at random (each namespace has its own
    address space, so a clash with another test's set only matters for the logs).
    """
    check_can_make_hosts()
    if count != 2:
        raise ValueError(f"make_hosts makes 2 hosts joined by one veth pair, not {count}")
    tag = uuid.uuid4().hex[:6]
    subnet = random.randint(1, 254)
    hosts = [Host(f"rk-{tag}-h{i}", f"rk{tag}v{i}", f"10.231.{subnet}.{i + 1}", Path(root) / f"host{i}")
             for i in range(count)]
    made: list[Host] = []
    try:
        for host in hosts:
            done = _ip("netns", "add", host.netns, check=False)
            if done.returncode != 0:
                raise HostsUnavailable(f"`ip netns add` failed: {done.stderr.strip()}")
            made.append(host)
        _ip("link", "add", hosts[0].ifname, "type", "veth", "peer", "name", hosts[1].ifname)
        for host in hosts:
            _ip("link", "set", host.ifname, "netns", host.netns)
            _ip("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", host.ifname)
            _ip("-n", host.netns, "link", "set", host.ifname, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")  # gloo and torchrun's store also talk locally
            host.workdir.mkdir(parents=True, exist_ok=True)
    except BaseException:
        remove_hosts(made)
        _ip("link", "del", hosts[0].ifname, check=False)  # a pair not yet moved into a namespace
        raise
    return hosts


def remove_hosts(hosts: list[Host]) -> None:
    """Kill every process still inside the hosts' namespaces, then delete the namespaces."""
    for host in hosts:
        pids = _ip("netns", "pids", host.netns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", host.netns, check=False)
