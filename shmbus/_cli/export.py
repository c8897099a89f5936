"""``shmbus export [BUS] [--port 9464] [--host 127.0.0.1] [--path DIR]``: the
figures of ``shmbus stat`` as Prometheus metrics, served over HTTP at
``http://HOST:PORT/metrics`` until Ctrl-C or SIGTERM (exit status 0).  Without
BUS every memory bus on the host is exported (found again at each scrape);
``--path DIR`` exports the disk bus BUS kept in DIR.  It binds 127.0.0.1 unless
told otherwise.  A port already in use exits 1 with one line on stderr.

The bus is read at each scrape (one ``Watcher.look()``, the lock-free snapshot
``shmbus stat`` takes), so the figures are as fresh as the scrape and nothing
runs between scrapes.  Counters (``_total``) are the bus's own counters: they
only grow while the topic exists, and start again from 0 if it is deleted and
created again (Prometheus's ``rate()`` takes that as a counter reset).  Sizes are
in bytes, times in seconds, ratios from 0 to 1.

Labels: ``bus`` and ``topic`` are names; ``partition`` is the partition's number;
``group`` is a named group's name, or ``(private:N)`` for a consumer's private
group, N being the group's entry in the topic.  Private groups are exported
because they are tethered and can hold producers back like any group; their
entry is reused once the consumer has gone, so their series come and go with
their consumers.  A topic deleted while a scrape reads it is left out of that
scrape.

Per bus (``{bus}``):
  shmbus_bus_up                          1 if the bus could be opened, else 0
Per topic (``{bus,topic}``):
  shmbus_topic_healthy                   1 if the health verdict is ok, else 0
  shmbus_topic_damaged                   1 if the topic cannot be read (damaged), else 0
  shmbus_topic_problems                  problems in the health verdict (see shmbus stat)
  shmbus_topic_producers                 live producers
  shmbus_topic_partitions                partitions
  shmbus_topic_capacity_bytes            data bytes of one partition
  shmbus_topic_wakeups_total             wake-ups of waiting processes
  shmbus_topic_sweeps_total              recovery sweeps run
  shmbus_topic_recovered_groups_total    private groups of dead processes removed
Per partition (``{bus,topic,partition}``):
  shmbus_messages_published_total        messages published (the partition's end offset)
  shmbus_bytes_published_total           bytes published (records with their overhead)
  shmbus_messages_dropped_total          messages lost, by ``reason``: full (refused,
                                         on_full="drop_newest"), oldest (overwritten,
                                         on_full="drop_oldest"), spill_lost (lost
                                         from a spill file)
  shmbus_blocked_sends_total             sends that waited for room
  shmbus_messages_spilled_total          messages written to the spill file
  shmbus_messages_discarded_total        records dropped by disk recovery
  shmbus_recovered_claims_total          claims of dead producers recovered
  shmbus_duplicates_total                sends not published: their msg_id was seen
  shmbus_dedup_evicted_total             msg_ids forgotten within the window (table full)
  shmbus_partition_fill_ratio            share of the capacity in use (data or index)
  shmbus_partition_bytes_in_use          bytes held for some group
  shmbus_partition_oldest_offset         first offset still held
  shmbus_partition_spill_waiting         messages waiting in the spill file
  shmbus_partition_spill_bytes           bytes waiting in the spill file
Per group and partition (``{bus,topic,group,partition}``):
  shmbus_group_lag                       messages published and not yet committed
  shmbus_group_committed_offset          the group's committed offset
  shmbus_group_pending                   messages delivered and not yet done
Per group (``{bus,topic,group}``):
  shmbus_group_messages_delivered_total  deliveries (redeliveries included)
  shmbus_group_messages_acked_total      messages acknowledged (released under ack="auto")
  shmbus_group_messages_redelivered_total  messages delivered again
  shmbus_group_messages_dead_lettered_total  messages sent to the dead-letter topic
  shmbus_group_messages_lost_total       messages the group missed (overwritten first)
  shmbus_group_members{state="alive"|"dead"}  members (dead: not yet recovered)
Per member process (``{bus,topic,group,pid}``):
  shmbus_member_idle_seconds             seconds since its last poll or wait (the
                                         largest, if the process has several
                                         consumers in the group)
Of the exporter:
  shmbus_export_look_seconds             seconds this scrape took to read the buses
"""
import argparse
import errno
import signal
import socket
import socketserver
import sys
import threading
import time
from typing import Any, Dict, Iterator, List
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .common import Failed, Usage, add_path, target
from .report import Watcher

DEFAULT_PORT = 9464
DEFAULT_HOST = "127.0.0.1"

B, T = ["bus"], ["bus", "topic"]
P = T + ["partition"]
G = T + ["group"]
GP = G + ["partition"]
DROPS = (("dropped_full", "full"), ("dropped_oldest", "oldest"), ("spill_lost", "spill_lost"))


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="Prometheus metrics over HTTP (/metrics)")
    p.add_argument("bus", nargs="?", metavar="BUS", help="the bus (default: every memory bus)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port to listen on (default {DEFAULT_PORT})")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0: every interface)")
    add_path(p)
    return p


def group_label(g: Dict[str, Any]) -> str:
    return f"(private:{g['entry']})" if g["private"] else g["name"]


class BusCollector(Collector):
    """Every metric, from one ``Watcher.look()`` per scrape.  Scrapes may come
    on several threads at once: the Watcher is used by one at a time."""

    def __init__(self, watcher: Watcher):
        self.watcher = watcher
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            t0 = time.perf_counter()
            report = self.watcher.look()
            took = time.perf_counter() - t0
        yield from metrics(report)
        g = GaugeMetricFamily("shmbus_export_look_seconds",
                              "Seconds this scrape took to read the buses.")
        g.add_metric([], took)
        yield g


def metrics(report: Dict[str, Any]) -> List[Metric]:
    """The metric families of a ``Watcher.look()`` report."""
    m = _Families()
    for bus, b in report["buses"].items():
        m.gauge("bus_up", "1 if the bus could be opened, else 0.", B, [bus], 0 if "error" in b else 1)
        for topic, t in b.get("topics", {}).items():
            _topic(m, bus, topic, t)
    return m.all()


def _topic(m: "_Families", bus: str, topic: str, t: Dict[str, Any]) -> None:
    if "missing" in t:  # deleted while we looked: gone, not damaged
        return
    bt = [bus, topic]
    status = t["health"]["status"]
    m.gauge("topic_healthy", "1 if the topic's health verdict is ok, else 0.", T, bt,
            1 if status == "ok" else 0)
    m.gauge("topic_damaged", "1 if the topic cannot be read (damaged), else 0.", T, bt,
            1 if status == "damaged" else 0)
    m.gauge("topic_problems", "Problems in the topic's health verdict (see shmbus stat).", T, bt,
            len(t["health"]["problems"]))
    if "config" not in t:
        return
    c = t["config"]
    m.gauge("topic_producers", "Live producers of the topic.", T, bt, len(t["producers"]))
    m.gauge("topic_partitions", "Partitions of the topic.", T, bt, c["partitions"])
    m.gauge("topic_capacity_bytes", "Data bytes of one partition of the topic.", T, bt,
            c["capacity"])
    m.counter("topic_wakeups", "Wake-ups of processes waiting on the topic.", T, bt, t["wakeups"])
    m.counter("topic_sweeps", "Recovery sweeps run over the topic.", T, bt, t["sweeps"])
    m.counter("topic_recovered_groups", "Private groups of dead processes removed.", T, bt,
              t["recovered_groups"])
    for p in t["partitions"]:
        lp = bt + [str(p["partition"])]
        m.counter("messages_published", "Messages published (the partition's end offset).", P, lp,
                  p["published"])
        m.counter("bytes_published", "Bytes published, records with their overhead.", P, lp,
                  p["bytes"])
        for key, reason in DROPS:
            m.counter("messages_dropped", "Messages lost: refused when full (drop_newest), "
                      "overwritten (drop_oldest) or lost from a spill file.",
                      P + ["reason"], lp + [reason], p[key])
        m.counter("blocked_sends", "Sends that waited for room.", P, lp, p["blocked_sends"])
        m.counter("messages_spilled", "Messages written to the spill file.", P, lp, p["spilled"])
        m.counter("messages_discarded", "Records dropped by disk recovery.", P, lp, p["discarded"])
        m.counter("recovered_claims", "Claims of dead producers recovered.", P, lp,
                  p["recovered_claims"])
        m.counter("duplicates", "Sends not published: their msg_id was seen within the dedup "
                  "window.", P, lp, p["duplicates"])
        m.counter("dedup_evicted", "Msg_ids forgotten within the dedup window for want of room.",
                  P, lp, p["dedup_evicted"])
        m.gauge("partition_fill_ratio", "Share of the partition's capacity in use "
                "(data bytes or record index, the fuller).", P, lp, p["fill"])
        m.gauge("partition_bytes_in_use", "Bytes of the partition held for some group.", P, lp,
                p["bytes_in_use"])
        m.gauge("partition_oldest_offset", "First offset the partition still holds.", P, lp,
                p["oldest"])
        m.gauge("partition_spill_waiting", "Messages waiting in the partition's spill file.", P, lp,
                p["spill_waiting"])
        m.gauge("partition_spill_bytes", "Bytes waiting in the partition's spill file.", P, lp,
                p["spill_bytes"])
    for g in t["groups"]:
        lg = bt + [group_label(g)]
        for gp in g["partitions"]:
            lgp = lg + [str(gp["partition"])]
            m.gauge("group_lag", "Messages published and not yet committed by the group.", GP, lgp,
                    gp["lag"])
            m.gauge("group_committed_offset", "The group's committed offset.", GP, lgp,
                    gp["committed"])
            m.gauge("group_pending", "Messages delivered to the group and not yet done.", GP, lgp,
                    gp["pending"])
        m.counter("group_messages_delivered", "Deliveries to the group, redeliveries included.",
                  G, lg, g["delivered"])
        m.counter("group_messages_acked", "Messages the group acknowledged "
                  "(released, under ack=auto).", G, lg, g["acked"])
        m.counter("group_messages_redelivered", "Messages delivered to the group again.", G, lg,
                  g["redelivered"])
        m.counter("group_messages_dead_lettered", "Messages the group sent to its dead-letter "
                  "topic.", G, lg, g["dead_lettered"])
        m.counter("group_messages_lost", "Messages the group missed (overwritten before it "
                  "read them).", G, lg, g["lost"])
        alive = sum(1 for mem in g["members"] if mem["alive"])
        for state, n in (("alive", alive), ("dead", len(g["members"]) - alive)):
            m.gauge("group_members", "Members of the group (dead: not yet recovered).",
                    G + ["state"], lg + [state], n)
        idle: Dict[int, float] = {}
        for mem in g["members"]:
            idle[mem["pid"]] = max(idle.get(mem["pid"], 0.0), mem["idle_seconds"])
        for pid, seconds in sorted(idle.items()):
            m.gauge("member_idle_seconds", "Seconds since the member process last polled or "
                    "waited.", G + ["pid"], lg + [str(pid)], seconds)


class _Families:
    """Metric families by name, in the order first seen; samples added to them."""

    def __init__(self) -> None:
        self.fams: Dict[str, Metric] = {}

    def _get(self, cls: type, name: str, doc: str, labels: List[str]) -> Metric:
        f = self.fams.get(name)
        if f is None:
            f = self.fams[name] = cls("shmbus_" + name, doc, labels=labels)
        return f

    def gauge(self, name: str, doc: str, labels: List[str], values: List[str], v: float) -> None:
        self._get(GaugeMetricFamily, name, doc, labels).add_metric(values, v)

    def counter(self, name: str, doc: str, labels: List[str], values: List[str], v: float) -> None:
        self._get(CounterMetricFamily, name, doc, labels).add_metric(values, v)

    def all(self) -> List[Metric]:
        return list(self.fams.values())


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no line per scrape
        pass


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted exporter is not refused by TIME_WAIT


def app(registry: CollectorRegistry) -> Any:
    """``/metrics`` gives the metrics, ``/`` a pointer to them, anything else 404."""
    metrics_app = make_wsgi_app(registry)

    def serve(environ: Dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [b'<html><body>shmbus exporter: <a href="/metrics">/metrics</a></body></html>\n']
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: the metrics are at /metrics\n"]

    return serve


def serve(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """An HTTP server bound to host:port (not yet serving); Failed if it cannot bind."""
    cls = _Server
    if ":" in host:  # an IPv6 address
        cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    try:
        return make_server(host, port, app(registry), cls, handler_class=_Quiet)
    except OSError as e:
        why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise Failed(f"cannot listen on {host}:{port}: {why}") from None


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise Usage("--port must be from 0 to 65535")
    bus, topic = target(args.bus) if args.bus else (None, None)
    if topic is not None:
        raise Usage("export takes a BUS, not a topic")
    if bus is None and args.path is not None:
        raise Usage("--path needs a BUS")
    watcher = Watcher(None if bus is None else [bus], args.path)
    collector = BusCollector(watcher)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = serve(registry, args.host, args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="shmbus-export", daemon=True)
    try:
        thread.start()
        host, port = server.server_address[:2]
        print(f"shmbus export: serving http://{_url_host(host)}:{port}/metrics", file=sys.stderr,
              flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        server.shutdown()
        server.server_close()
        # a scrape still running on its thread finishes before the buses close
        got = collector.lock.acquire(timeout=5)
        try:
            watcher.close()
        finally:
            if got:
                collector.lock.release()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

