"""A real network path for the engine: a network namespace, a veth pair, a rate cap, loss, delay.

    root namespace (the engine)                    namespace s2snet-<pid>-<n>
    10.203.7.<4k+1>/30  ==== veth, MTU 1500 ====  10.203.7.<4k+2>/30
      tbf 20 mbit out                                tbf 20 mbit out
      nftables: 0.5 % of packets dropped              delay relay :8766 (30-50 ms per chunk,
      each way (numgen random mod 1000 < 5)             in order, both ways) -> server :8765
                                                    python3 -m openai_s2s.localserver

The engine connects to ``NetPath.url`` (the relay, across the veth); the relay forwards to the
local server in the same namespace. The kernel has no netem, so the delay is the relay's
(openai_s2s/tools/delayrelay.py); loss is an nftables rule in a table of our own, and ``blackhole()``
adds a rule there that drops everything on the veth, as a path that dies mid-call.

Everything is named after this process's id, removed on exit even after a failure, and a
previous run's leftovers (a namespace, veth or table whose process is gone) are removed first.
The server and the relay end by themselves after ``lifetime`` seconds in any case.

Where namespaces cannot be made (not root, a tool missing: ip, tc, nft; the kernel refusing a
namespace) it raises :class:`NetPathUnavailable` with the reason: the tests skip on it, the soak
command says it. Used by tests/test_netpath.py and bench/soak.py.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))   # the checkout: the server runs from it
RELAY = os.path.join(HERE, "delayrelay.py")
PREFIX = "s2snet-"
TABLE_PREFIX = "s2snet_"
SUBNET = ipaddress.ip_network("10.203.7.0/24")   # /30s are cut from this, never anything else
SERVER_PORT, RELAY_PORT = 8765, 8766
KEY_OVER_WS = ('<configuration name="openai_s2s.conf"><settings>'
               '<param name="key-over-ws" value="true"/></settings></configuration>')

_made = 0


class NetPathUnavailable(RuntimeError):
    """No namespace can be made here; the message says why."""


def run(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def why_not() -> Optional[str]:
    """Why no namespace can be made here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"no {tool!r} command (install iproute2 and nftables)"
    return None


def remove_stale() -> List[str]:
    """Remove namespaces, veths and tables a previous run left (its process is gone)."""
    removed = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\d+", name)
        if m and not _alive(int(m.group(1))):
            # its server and relay would end at their lifetime anyway; end them now
            for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "delete", name, check=False)
            removed.append(name)
    for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(r"\d+: (s2s([0-9a-f]+)x\d+[ab])[@:]", line)
        if m and not _alive(int(m.group(2), 16)):
            run("ip", "link", "delete", m.group(1), check=False)
            removed.append(m.group(1))
    for line in run("nft", "list", "tables", check=False).stdout.splitlines():
        m = re.fullmatch(r"table inet (" + re.escape(TABLE_PREFIX) + r"(\d+)_\d+)", line.strip())
        if m and not _alive(int(m.group(2))):
            run("nft", "delete", "table", "inet", m.group(1), check=False)
            removed.append(m.group(1))
    return removed


def _free_slot() -> ipaddress.IPv4Network:
    """A /30 of SUBNET that no address or route here (other than a default) touches."""
    taken = []
    for line in run("ip", "-o", "-4", "addr", "show", check=False).stdout.splitlines():
        taken += [ipaddress.ip_network(m, strict=False) for m in re.findall(r"inet (\S+)", line)]
    for line in run("ip", "-4", "route", "show", check=False).stdout.splitlines():
        m = re.match(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\s", line)
        if m:
            taken.append(ipaddress.ip_network(m.group(1), strict=False))
    taken = [net for net in taken if net.prefixlen >= SUBNET.prefixlen]  # a wider route does not clash
    slots = list(SUBNET.subnets(new_prefix=30))
    start = os.getpid() % len(slots)
    for slot in slots[start:] + slots[:start]:
        if not any(slot.overlaps(net) for net in taken):
            return slot
    raise RuntimeError(f"no free /30 left in {SUBNET}")


class NetPath:
    """The path, as a context manager. ``url`` is what the engine connects to; ``connections``
    is empty (the server runs in another process), so engine_harness.Harness can take this
    object as its server."""

    def __init__(self, rate: str = "20mbit", loss_per_mille: int = 5, delay=(0.030, 0.050),
                 lifetime: float = 300.0, server_args: Sequence[str] = ("--speed", "4"),
                 api_key: str = "sk-local-test", mtu: int = 1500, max_conns: int = 16):
        global _made
        _made += 1
        pid = os.getpid()
        self.ns = f"{PREFIX}{pid}-{_made}"
        self.table = f"{TABLE_PREFIX}{pid}_{_made}"
        self.veth, self.peer = f"s2s{pid:x}x{_made % 10}a", f"s2s{pid:x}x{_made % 10}b"
        self.rate, self.loss, self.delay, self.mtu = rate, loss_per_mille, delay, mtu
        self.lifetime, self.server_args, self.api_key = lifetime, list(server_args), api_key
        self.max_conns = max_conns   # connections the relay takes over its life
        self.procs: List[subprocess.Popen] = []
        self.outputs = {}
        self.logdir: Optional[str] = None
        self.connections: list = []
        self.blackholed = False
        self._made_ns = self._made_link = self._made_table = False

    # -- setup ------------------------------------------------------------------------------
    def __enter__(self) -> "NetPath":
        reason = why_not()
        if reason:
            raise NetPathUnavailable(reason)
        remove_stale()
        try:
            done = run("ip", "netns", "add", self.ns, check=False)
            if done.returncode:
                raise NetPathUnavailable(f"cannot make a network namespace: {done.stderr.strip()}")
            self._made_ns = True
            self._build()
            self._start_server()
            self._start_relay()
        except RuntimeError as e:
            self.close()
            if "Operation not permitted" in str(e):   # a namespace, but no CAP_NET_ADMIN in it
                raise NetPathUnavailable(f"cannot build the path: {e}") from None
            raise
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        slot = _free_slot()
        hosts = list(slot.hosts())
        self.near, self.far = str(hosts[0]), str(hosts[1])
        ns = ("ip", "-n", self.ns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        self._made_link = True
        run("ip", "link", "set", self.peer, "netns", self.ns)
        run("ip", "addr", "add", f"{self.near}/30", "dev", self.veth)
        run("ip", "link", "set", self.veth, "mtu", str(self.mtu), "up")
        run(*ns, "addr", "add", f"{self.far}/30", "dev", self.peer)
        run(*ns, "link", "set", self.peer, "mtu", str(self.mtu), "up")
        run(*ns, "link", "set", "lo", "up")
        for dev, prefix in ((self.veth, ()), (self.peer, ("ip", "netns", "exec", self.ns))):
            run(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", self.rate,
                "burst", "32kb", "latency", "100ms")
        run("nft", "add", "table", "inet", self.table)
        self._made_table = True
        for chain, hook, match in (("out", "output", "oifname"), ("in", "input", "iifname")):
            run("nft", "add", "chain", "inet", self.table, chain,
                f"{{ type filter hook {hook} priority 0; policy accept; }}")
            if self.loss:
                run("nft", "add", "rule", "inet", self.table, chain, match, self.veth,
                    "numgen", "random", "mod", "1000", "<", str(self.loss), "counter", "drop")

    def _spawn(self, name: str, argv: Sequence[str], ready: str, timeout: float = 15.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (REPO, os.environ.get("PYTHONPATH")) if p), PYTHONUNBUFFERED="1")
        if self.logdir is None:
            self.logdir = tempfile.mkdtemp(prefix=self.ns + "-")
        path = os.path.join(self.logdir, name + ".log")
        self.outputs[name] = path
        with open(path, "wb") as sink:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "timeout", str(int(self.lifetime)),
                                     *argv], stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if ready in "\n".join(self.log(name)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start in the namespace: {self.log(name)[-5:]}")

    def _start_server(self) -> None:
        self._spawn("server", [sys.executable, "-m", "openai_s2s.localserver", "--host", self.far,
                               "--port", str(SERVER_PORT), "--api-key", self.api_key,
                               "--allow-remote", *self.server_args], "listening on")

    def _start_relay(self) -> None:
        low, high = self.delay
        self._spawn("relay", [sys.executable, RELAY, "--listen", f"{self.far}:{RELAY_PORT}",
                              "--to", f"{self.far}:{SERVER_PORT}", "--min", str(low), "--max", str(high),
                              "--lifetime", str(self.lifetime), "--max-conns", str(self.max_conns)], "relaying")

    # -- use --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://{self.far}:{RELAY_PORT}"

    def blackhole(self) -> None:
        """From now on every packet on the veth is dropped, both ways."""
        for chain, match in (("out", "oifname"), ("in", "iifname")):
            run("nft", "insert", "rule", "inet", self.table, chain, match, self.veth,
                "counter", "drop", "comment", '"blackhole"')
        self.blackholed = True

    def dropped(self) -> List[int]:
        """The packets each rule in our table dropped so far."""
        text = run("nft", "list", "table", "inet", self.table, check=False).stdout
        return [int(n) for n in re.findall(r"counter packets (\d+)", text)]

    def log(self, name: str) -> List[str]:
        """What a process (server, relay) printed so far."""
        path = self.outputs.get(name)
        if not path or not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()

    # -- teardown ---------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._made_table:
            run("nft", "delete", "table", "inet", self.table, check=False)
        if self._made_ns:
            run("ip", "netns", "delete", self.ns, check=False)   # takes the veth pair with it
        if self._made_link:
            run("ip", "link", "delete", self.veth, check=False)  # if it never got there
        self._made_ns = self._made_link = self._made_table = False
        if self.logdir:
            shutil.rmtree(self.logdir, ignore_errors=True)
            self.logdir = None

    def __exit__(self, *exc) -> None:
        self.close()
