"""A RabbitMQ cluster of N nodes of our own on loopback, from Debian's rabbitmq-server: for `make run` with a
clustered broker and for fault drills (kill -9 a node, restart it, see which node a client is on).

Each node is a `RabbitMQ` with its own HOME, node name, data, AMQP, management and Erlang distribution ports; all
share one Erlang cookie and one epmd port, since nodes on one host find each other through the epmd listening on
ERL_EPMD_PORT. Node indexes are 0-based, like `urls()`.

The cluster forms by RabbitMQ's classic config peer discovery (rabbitmq.conf), one node at a time: node 0 of a fresh
cluster lists no peers and founds it; each other node lists the nodes already running and boots only once the one
before it has finished booting. RabbitMQ 3.10 does not survive a node joining while another is still booting: the
booting one fails its schema check (`schema_integrity_check_failed`) or its feature flags (`incompatible_feature_flags
... All replicas on diskfull nodes are not active yet`), which made a concurrent boot fail about one start in three.
Nodes with data of their own ignore peer discovery and wait for their former peers, so a cluster started again boots
all at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
from base64 import b64encode
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from devstack.procs import StackError, free_ports, pid_alive, read_pid, wait_until
from devstack.rabbitmq import RabbitMQ, drop_vhost, make_vhost

BOOT_TIMEOUT = 120.0


@dataclass
class ClusterNode(RabbitMQ):
    """One member: a `RabbitMQ` whose epmd, distribution port and cookie the cluster chooses."""

    shared_epmd_port: int = 0
    own_dist_port: int = 0
    cookie: str = ""
    cluster_size: int = 1
    # Nodes running when this one boots; only a node without data of its own looks at them.
    seeds: tuple[str, ...] = ()

    @property
    def dist_port(self) -> int:
        return self.own_dist_port

    @property
    def epmd_port(self) -> int:
        return self.shared_epmd_port

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "mnesia" / self.node

    def has_data(self) -> bool:
        return (self.data_dir / "schema.DAT").exists()

    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if pid and pid_alive(pid) else None

    def config_lines(self) -> list[str]:
        # A new connection shows in the management API (connections(), node_for_connection) only with the next
        # statistics round: every second rather than every 5 s, so that drills need not wait.
        lines = [*super().config_lines(), "collect_statistics_interval = 1000"]
        if self.seeds:
            # Listing this node too keeps the peer discovery lock from warning that it is not in the list.
            peers = [*self.seeds, self.node]
            lines.append("cluster_formation.peer_discovery_backend = classic_config")
            lines += [f"cluster_formation.classic_config.nodes.{i} = {name}" for i, name in enumerate(peers, 1)]
            # A peer counts as reachable only once its database runs: until then, keep asking for up to two
            # minutes (by default a node gives up after 5 s and starts a cluster of its own).
            lines += [
                "cluster_formation.discovery_retry_limit = 240",
                "cluster_formation.discovery_retry_interval = 500",
            ]
        return lines

    def advanced_config(self) -> str:
        # A quorum queue gets min(quorum_cluster_size, cluster size) members, 3 by default: with every node a
        # member even in larger clusters, a drill can kill any node and know each queue lost exactly one member.
        return f"[{{rabbit, [{{quorum_cluster_size, {self.cluster_size}}}]}}].\n"

    def _write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cookie = self.base_dir / ".erlang.cookie"
        if not cookie.exists() or cookie.read_text() != self.cookie:
            if cookie.exists():
                cookie.chmod(0o600)
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        super()._write_config()


class RabbitCluster:
    """`nodes` RabbitMQ nodes clustered on 127.0.0.1, one user and password on all of them.

    `ports` are 3 * nodes + 1 distinct ports: AMQP, management and distribution port of each node, then the shared
    epmd port. Without them the cluster reuses those saved in `base_dir` by an earlier start (a node's name holds its
    AMQP port, and a cluster knows its members by name, so its data is only usable with the same ports), else picks
    free ones.
    """

    def __init__(
        self,
        base_dir: Path,
        nodes: int,
        password: str,
        *,
        user: str = "vigil",
        ports: Sequence[int] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = base_dir
        self.size = nodes
        self.password = password
        self.user = user
        chosen = list(ports) if ports is not None else self._saved_ports() or free_ports(3 * nodes + 1)
        if len(chosen) != 3 * nodes + 1 or len(set(chosen)) != len(chosen):
            raise ValueError(f"need {3 * nodes + 1} distinct ports for {nodes} nodes, got {chosen}")
        self.ports = chosen
        self.epmd_port = chosen[-1]
        self.members = [
            ClusterNode(
                base_dir / f"node{i}",
                chosen[3 * i],
                chosen[3 * i + 1],
                password,
                user,
                shared_epmd_port=self.epmd_port,
                own_dist_port=chosen[3 * i + 2],
                cluster_size=nodes,
            )
            for i in range(nodes)
        ]

    @property
    def _layout_file(self) -> Path:
        return self.base_dir / "cluster.json"

    def _saved_ports(self) -> list[int] | None:
        try:
            saved = json.loads(self._layout_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("nodes") != self.size or not isinstance(saved.get("ports"), list):
            return None
        return [int(port) for port in saved["ports"]]

    def _cookie(self) -> str:
        path = self.base_dir / ".erlang.cookie"
        if not path.exists():
            path.write_text(b64encode(os.urandom(15)).decode().replace("=", ""))
            path.chmod(0o400)
        return path.read_text().strip()

    # --- addresses -------------------------------------------------------------------------------------------

    @property
    def node_names(self) -> list[str]:
        return [member.node for member in self.members]

    def urls(self, vhost: str = "/") -> list[str]:
        return [member.url(vhost) for member in self.members]

    def url_list(self, vhost: str = "/") -> str:
        """All nodes' AMQP URLs comma-separated, as VIGIL_AMQP_URL takes them."""
        return ",".join(self.urls(vhost))

    def index_of(self, node_name: str) -> int:
        return self.node_names.index(node_name)

    # --- whole cluster ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Boot every node and wait until all are running members of one cluster."""
        running = [name for i, name in enumerate(self.node_names) if self.pid(i)]
        if running:
            raise StackError(f"RabbitMQ nodes {running} already run from {self.base_dir}")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._layout_file.write_text(json.dumps({"nodes": self.size, "ports": self.ports}))
        cookie = self._cookie()
        for member in self.members:
            member.cookie = cookie
        # Started here rather than by the first node, so that nodes booting together do not race to start it.
        subprocess.run(
            ["epmd", "-daemon"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1"},
            capture_output=True,
            check=True,
        )
        names = self.node_names
        old = [i for i in range(self.size) if self.members[i].has_data()]
        try:
            if old:
                # Former members ignore peer discovery and wait for one another, so they boot together; nodes
                # without data (wiped) join them afterwards.
                self._boot({i: () for i in old})
                self._boot({i: tuple(names[j] for j in old) for i in range(self.size) if i not in old})
            else:
                # Node 0 founds the cluster; each other node joins the ones before it once they have booted.
                for i in range(self.size):
                    self._boot({i: tuple(names[:i])})
            self.wait_members(set(names))
        except BaseException:
            self.stop()
            raise

    def _boot(self, seeds: dict[int, tuple[str, ...]]) -> None:
        for i, peers in seeds.items():
            self.members[i].seeds = peers
            self.members[i].launch()
        deadline = time.monotonic() + BOOT_TIMEOUT
        for i in seeds:
            self.members[i].wait_started(timeout=max(deadline - time.monotonic(), 1))

    def stop(self) -> None:
        """Stop all nodes, then their epmd. At once, as each takes some 6 s (5 of them an idle wait in RabbitMQ
        3.10's shutdown); start() boots them together again, as nodes stopped together wait for one another."""
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            list(pool.map(lambda member: member.stop_server(), self.members))
        subprocess.run(
            ["epmd", "-kill"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
            capture_output=True,
            check=False,
        )

    # --- single nodes ----------------------------------------------------------------------------------------

    def pid(self, i: int) -> int | None:
        """The live beam process of node i, if any."""
        return self.members[i].pid()

    def kill_node(self, i: int) -> int:
        """kill -9 node i's Erlang VM, as a crash would; returns the pid it had."""
        pid = self.pid(i)
        if pid is None:
            raise StackError(f"{self.node_names[i]} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=10, what=f"death of {self.node_names[i]}")
        return pid

    def stop_node(self, i: int) -> None:
        """Stop node i gracefully; the others keep running."""
        self.members[i].stop_server()

    def start_node(self, i: int) -> None:
        """Bring a stopped or killed node back; returns once it runs and every running node counts it as running."""
        member = self.members[i]
        running = [name for j, name in enumerate(self.node_names) if j != i and self.pid(j)]
        member.seeds = tuple(running)
        member.launch()
        member.wait_started(timeout=BOOT_TIMEOUT)
        self.wait_members({*running, member.node})

    def restart_node(self, i: int) -> None:
        self.stop_node(i)
        self.start_node(i)

    # --- inspection ------------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: object = None, *, node: int | None = None) -> object:
        """The management API of node `node`, or of the first running node that answers."""
        if node is not None:
            return self.members[node].api(method, path, body)
        error: Exception | None = None
        for i, member in enumerate(self.members):
            if self.pid(i) is None:
                continue
            try:
                return member.api(method, path, body)
            except urllib.error.HTTPError:
                raise  # the node answered: the request is at fault, not the node
            except (OSError, urllib.error.URLError) as exc:
                error = exc
        raise StackError(f"no node of the cluster in {self.base_dir} answers its management API: {error}")

    def _running_as_seen_by(self, node: int | None) -> set[str]:
        nodes = self.api("GET", "/api/nodes?columns=name,running", node=node)
        assert isinstance(nodes, list)
        return {entry["name"] for entry in nodes if entry.get("running")}

    def running_nodes(self) -> list[str]:
        """Names of the members the cluster counts as running, in node order."""
        running = self._running_as_seen_by(None)
        return [name for name in self.node_names if name in running]

    def wait_members(self, expected: set[str], timeout: float = 60) -> None:
        """Wait until every node in `expected` runs and sees exactly `expected` running: one cluster, no strays."""

        def agreed() -> bool:
            try:
                return all(self._running_as_seen_by(self.index_of(name)) == expected for name in expected)
            except (OSError, urllib.error.URLError, StackError):
                return False

        wait_until(agreed, timeout=timeout, what=f"cluster of {sorted(expected)}")

    def connections(self) -> list[dict[str, object]]:
        """Client connections of the whole cluster: `name`, `user_provided_name` (the client's connection_name
        property; Vigil's services set it to their name), `vhost`, `user`, the `node` serving it, the client's
        address (`peer_host`, `peer_port`) and the AMQP `port` it connected to."""
        columns = "name,user_provided_name,vhost,user,node,peer_host,peer_port,port"
        found = self.api("GET", f"/api/connections?columns={columns}")
        assert isinstance(found, list)
        return [dict(entry) for entry in found]

    def node_for_connection(self, match: str | int) -> int | None:
        """The index of the node serving a client connection, found by its connection_name (str) or by the client's
        local port (int); the first such connection's if several match, None while none is listed (a new connection
        takes a moment to show up in the management API)."""
        key = "peer_port" if isinstance(match, int) else "user_provided_name"
        for connection in self.connections():
            if connection.get(key) == match:
                return self.index_of(str(connection["node"]))
        return None

    def quorum_members(self, queue: str, vhost: str = "/") -> list[str]:
        """The nodes holding a member of a quorum queue."""
        info = self.api("GET", f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
        assert isinstance(info, dict)
        return sorted(str(name) for name in info.get("members", []))

    # --- virtual hosts ---------------------------------------------------------------------------------------

    def add_vhost(self, name: str) -> str:
        """A fresh virtual host with full rights for our user; returns its URLs comma-separated (see url_list)."""
        make_vhost(self.api, self.user, name)
        return self.url_list(name)

    def delete_vhost(self, name: str) -> None:
        drop_vhost(self.api, name)
