"""The Prometheus endpoint (``broker.prometheus_url``): Warren's
``--prometheus-port`` listener, in RabbitMQ 3.10's rabbitmq_prometheus shape
(the reference the assertions were checked against).

What RabbitMQ 3.10 (rabbitmq_prometheus 3.10.8) serves, without
authentication:

* ``GET /metrics``: 200, ``Content-Type: text/plain; version=0.0.4``, the
  Prometheus text format with ``# TYPE`` before ``# HELP`` for every family.
  Per-object families (``rabbitmq_queue_*``, ``rabbitmq_channel_*``, ...) are
  aggregated: one series without labels, the sum over all queues (channels,
  ...).  Besides them the totals (``rabbitmq_connections``, ``_channels``,
  ``_consumers``, ``_queues``), the churn counters, the node's resources and
  alarms, ``rabbitmq_global_*`` with a ``protocol="amqp091"`` label (the
  per-queue-type ones also ``queue_type``, one series each for
  ``rabbit_classic_queue``, ``rabbit_quorum_queue`` and
  ``rabbit_stream_queue``), and ``rabbitmq_build_info`` /
  ``rabbitmq_identity_info`` (untyped, value 1, the information in labels;
  Grafana's RabbitMQ-Overview dashboard joins every panel on
  ``rabbitmq_identity_info``'s ``rabbitmq_node`` and ``rabbitmq_cluster``).
* ``GET /metrics/per-object``: the same, but the queue families are one
  series per queue labelled ``{vhost="...",queue="..."}`` (and no unlabelled
  sum).
* the ``rabbitmq_global_*`` counters and the churn counters change at once;
  the queue gauges (``rabbitmq_queue_messages*``, ``rabbitmq_queue_consumers``)
  only after the queue's next statistics round (every 5 s), and
  ``rabbitmq_queues`` drops a second or two after a queue's deletion, so the
  tests poll.
* quirk: RabbitMQ writes label values unescaped (a ``"``, ``\\`` or newline in
  a vhost or queue name breaks the output); the escaping test expects the
  text format's escapes and is an expected failure against RabbitMQ.

The broker is shared with the rest of the suite, so the counter checks
compare values before and after (``>=`` the activity caused here), and every
test works in its own vhost with its own queues.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import pika
import pika.exceptions
import pytest

import brokerctl
from mgmt import poll

CONTENT_TYPE = "text/plain; version=0.0.4"
POLL_TIMEOUT = 30.0  # RabbitMQ refreshes queue statistics every 5 s
CLASSIC = "rabbit_classic_queue"
AMQP = "amqp091"


# --- a parser for the Prometheus text format (version 0.0.4) ------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VALUE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN")
TIMESTAMP = re.compile(r"-?\d+")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


@dataclass
class Sample:
    name: str
    labels: dict
    value: float


@dataclass
class Family:
    name: str
    type: Optional[str] = None
    help: Optional[str] = None
    samples: list = field(default_factory=list)


class FormatError(AssertionError):
    pass


@dataclass
class Exposition:
    families: dict

    def __repr__(self) -> str:
        return f"<Exposition of {len(self.families)} families>"

    def family(self, name: str) -> Family:
        assert name in self.families, f"no metric family {name}"
        return self.families[name]

    def samples(self, name: str, **labels) -> list:
        """The samples of family ``name`` whose labels include ``labels``."""
        fam = self.families.get(name)
        if fam is None:
            return []
        return [s for s in fam.samples
                if all(s.labels.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels) -> float:
        """Sum of the matching samples' values (0 when there are none)."""
        return sum(s.value for s in self.samples(name, **labels))

    def value(self, name: str, **labels) -> float:
        """The value of the one series of ``name`` whose labels are exactly ``labels``."""
        found = [s for s in self.samples(name) if s.labels == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} series in {self.samples(name)}"
        return found[0].value


def _unescape_help(text: str, where: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "\\n":
            out.append("\\" if text[i + 1] == "\\" else "\n")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_labels(line: str, i: int, where: str) -> tuple:
    """Parses ``{name="value",...}`` starting at line[i] == "{"; returns (labels, next index)."""
    labels = {}
    i += 1
    while True:
        while i < len(line) and line[i] in " \t":
            i += 1
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(line, i)
        if not m:
            raise FormatError(f"{where}: bad label name at column {i}")
        name = m.group(0)
        if name in labels:
            raise FormatError(f"{where}: label {name} twice")
        i = m.end()
        if line[i:i + 2] != '="':
            raise FormatError(f"{where}: expected =\" after label {name}")
        i += 2
        value = []
        while True:
            if i >= len(line):
                raise FormatError(f"{where}: unterminated value of label {name}")
            c = line[i]
            if c == "\\":
                nxt = line[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise FormatError(f"{where}: invalid escape \\{nxt} in label {name}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        labels[name] = "".join(value)
        if i < len(line) and line[i] == ",":
            i += 1
        elif i < len(line) and line[i] == "}":
            return labels, i + 1
        else:
            raise FormatError(f"{where}: expected , or }} after label {name}")


def _family_of(name: str, families: dict) -> Optional[Family]:
    fam = families.get(name)
    if fam is not None and fam.type is not None:
        return fam
    for base_type, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix):
                base = families.get(name[:-len(suffix)])
                if base is not None and base.type == base_type:
                    return base
    return None


def parse(text: str) -> Exposition:
    """Parses (strictly) a text-format exposition.  Raises FormatError on a
    malformed line, a TYPE or HELP given twice or after its samples, a sample
    whose metric has no TYPE line, a family's samples not grouped together, or
    the same series twice."""
    if text and not text.endswith("\n"):
        raise FormatError("the exposition does not end with a newline")
    families: dict = {}
    seen_series: set = set()
    finished: set = set()  # families whose group of samples has ended
    current: Optional[str] = None
    for lineno, line in enumerate(text.split("\n"), 1):
        where = f"line {lineno} {line[:120]!r}"
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line[1:].lstrip(" \t").split(None, 2)
            if len(parts) >= 2 and parts[0] in ("HELP", "TYPE"):
                kind, name = parts[0], parts[1]
                rest = parts[2] if len(parts) == 3 else ""
                if not METRIC_NAME.fullmatch(name):
                    raise FormatError(f"{where}: bad metric name")
                fam = families.setdefault(name, Family(name))
                if kind == "TYPE":
                    if rest not in TYPES:
                        raise FormatError(f"{where}: unknown type {rest!r}")
                    if fam.type is not None:
                        raise FormatError(f"{where}: second TYPE for {name}")
                    if fam.samples:
                        raise FormatError(f"{where}: TYPE after samples of {name}")
                    fam.type = rest
                else:
                    if fam.help is not None:
                        raise FormatError(f"{where}: second HELP for {name}")
                    fam.help = _unescape_help(rest, where)
            continue  # other comments are ignored
        m = METRIC_NAME.match(line)
        if not m:
            raise FormatError(f"{where}: bad metric name")
        name, i = m.group(0), m.end()
        labels: dict = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, where)
        tail = line[i:]
        if not tail[:1] in (" ", "\t"):
            raise FormatError(f"{where}: expected a space before the value")
        fields = tail.split()
        if not 1 <= len(fields) <= 2 or not VALUE.fullmatch(fields[0]) \
                or (len(fields) == 2 and not TIMESTAMP.fullmatch(fields[1])):
            raise FormatError(f"{where}: bad value or timestamp")
        value = float(fields[0].replace("Inf", "inf"))
        fam = _family_of(name, families)
        if fam is None:
            raise FormatError(f"{where}: metric {name} has no TYPE line")
        if fam.name != current:
            if fam.name in finished:
                raise FormatError(f"{where}: samples of {fam.name} are not grouped together")
            if current is not None:
                finished.add(current)
            current = fam.name
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise FormatError(f"{where}: series {name}{labels} twice")
        seen_series.add(key)
        fam.samples.append(Sample(name, labels, value))
    return Exposition(families)


def test_parser_itself():
    """The parser accepts what the format allows and rejects the mistakes it looks for."""
    expo = parse('# TYPE a counter\n# HELP a Some \\\\ help\\n.\na{x="1",y="q\\"\\\\\\n"} 3\n'
                 'a{x="2",} 1e3 1700000000000\n# a comment\n\n'
                 '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1.5\nh_count 2\n'
                 '# TYPE g gauge\ng NaN\ng{l=""} -Inf\n')
    assert expo.family("a").help == "Some \\ help\n."
    assert expo.value("a", x="1", y='q"\\\n') == 3
    assert expo.value("a", x="2") == 1000
    assert expo.total("a") == 1003
    assert expo.total("h_count") == 0 and len(expo.family("h").samples) == 3
    assert math.isnan(expo.value("g")) and expo.value("g", l="") == -math.inf
    for bad in ("a 1\n",                                   # no TYPE
                "# TYPE a gauge\na 1",                      # no final newline
                "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",   # same series twice
                "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"\"} 1\n",  # not grouped
                "# TYPE a gauge\na 1\n# TYPE a gauge\n",    # TYPE twice
                "# TYPE a gauge\na{x=\"\\q\"} 1\n",          # bad escape
                "# TYPE a gauge\na{x=\"a\"b\"} 1\n",         # unescaped quote
                "# TYPE a gauge\na one\n",                   # bad value
                "# TYPE a meter\na 1\n"):                    # bad type
        with pytest.raises(FormatError):
            parse(bad)


# --- fixtures and helpers -----------------------------------------------------------

def is_rabbitmq(broker, mgmt) -> bool:
    if not broker.external and brokerctl.warren_bin().name == "rabbitmq-as-warren.sh":
        return True
    status, body = mgmt.get("/api/overview")
    return status == 200 and isinstance(body, dict) and body.get("product_name") == "RabbitMQ"


@pytest.fixture(scope="module")
def rabbitmq(broker, mgmt) -> bool:
    """Whether the broker under test is RabbitMQ (the reference) rather than Warren."""
    return is_rabbitmq(broker, mgmt)


def scrape(prometheus, path: str = "/metrics") -> Exposition:
    status, headers, text = prometheus.get(path)
    assert status == 200, f"GET {path}: HTTP {status} {text[:500]!r}"
    return parse(text)


def poll_metrics(prometheus, check: Callable[[Exposition], object], what: str,
                 path: str = "/metrics", timeout: float = POLL_TIMEOUT,
                 between: Optional[Callable[[], None]] = None,
                 show: Optional[Callable[[Exposition], object]] = None) -> Exposition:
    """Scrapes until check(exposition) is truthy and returns that exposition
    (RabbitMQ shows some values only after a statistics round).  ``between``
    runs before each scrape (e.g. to let pika handle deliveries); ``show``
    says what the last scrape had when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if between is not None:
            between()
        expo = scrape(prometheus, path)
        try:
            ok = check(expo)
        except AssertionError:
            ok = False
        if ok:
            return expo
        if time.monotonic() >= deadline:
            last = f"; last: {show(expo)!r}" if show is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{last}")
        time.sleep(0.2)


def pump(conn, seconds: float = 0.05) -> None:
    conn.process_data_events(time_limit=seconds)


def grown(before: Exposition, name: str, n: float, **labels) -> Callable[[Exposition], bool]:
    return lambda now: now.total(name, **labels) - before.total(name, **labels) >= n


def poll_growth(prometheus, before: Exposition, expected: list,
                between: Optional[Callable[[], None]] = None) -> Exposition:
    """Polls until, for every ``(name, n, labels)`` of ``expected``, the sum of
    ``name``'s series matching ``labels`` has grown by ``n`` or more; on
    timeout names all that have not."""
    def short(e: Exposition) -> list:
        return [f"{name}{labels or ''}: expected +{n}, grew by "
                f"{e.total(name, **labels) - before.total(name, **labels):g}"
                + ("" if name in e.families else " (no such family)")
                for name, n, labels in expected if not grown(before, name, n, **labels)(e)]

    return poll_metrics(prometheus, lambda e: not short(e), "the counters to grow",
                        between=between, show=short)


# --- the endpoint and its format --------------------------------------------------------

@pytest.mark.parametrize("path", ["/metrics", "/metrics/per-object"])
def test_endpoint_serves_text_format(prometheus, path):
    """200 with RabbitMQ's content type, a well-formed exposition in which
    every sample's metric has a TYPE (and a HELP) line, no authentication."""
    status, headers, text = prometheus.get(path)
    assert status == 200, text[:500]
    assert headers.get("Content-Type") == CONTENT_TYPE
    expo = parse(text)
    rabbit = {n: f for n, f in expo.families.items() if n.startswith("rabbitmq_")}
    assert len(rabbit) >= 30, sorted(rabbit)
    for name, fam in rabbit.items():
        assert fam.type is not None, f"{name} has no TYPE line"
        assert fam.help, f"{name} has no HELP line"


# name: (TYPE, HELP, label names of every series) as RabbitMQ 3.10 has them in /metrics
NO_LABELS = frozenset()
PROTOCOL = frozenset({"protocol"})
PROTOCOL_QUEUE_TYPE = frozenset({"protocol", "queue_type"})
FAMILIES = {
    # totals (the dashboard's Connections, Channels, Consumers, Queues)
    "rabbitmq_connections": ("gauge", "Connections currently open", NO_LABELS),
    "rabbitmq_channels": ("gauge", "Channels currently open", NO_LABELS),
    "rabbitmq_consumers": ("gauge", "Consumers currently connected", NO_LABELS),
    "rabbitmq_queues": ("gauge", "Queues available", NO_LABELS),
    # per-object families, aggregated in /metrics
    "rabbitmq_queue_messages_ready": ("gauge", "Messages ready to be delivered to consumers", NO_LABELS),
    "rabbitmq_queue_messages_unacked": (
        "gauge", "Messages delivered to consumers but not yet acknowledged", NO_LABELS),
    "rabbitmq_queue_messages": (
        "gauge", "Sum of ready and unacknowledged messages - total queue depth", NO_LABELS),
    "rabbitmq_queue_consumers": ("gauge", "Consumers on a queue", NO_LABELS),
    "rabbitmq_channel_consumers": ("gauge", "Consumers on a channel", NO_LABELS),  # "Publishers" panel
    # churn
    "rabbitmq_connections_opened_total": ("counter", "Total number of connections opened", NO_LABELS),
    "rabbitmq_connections_closed_total": (
        "counter", "Total number of connections closed or terminated", NO_LABELS),
    "rabbitmq_channels_opened_total": ("counter", "Total number of channels opened", NO_LABELS),
    "rabbitmq_channels_closed_total": ("counter", "Total number of channels closed", NO_LABELS),
    "rabbitmq_queues_declared_total": ("counter", "Total number of queues declared", NO_LABELS),
    "rabbitmq_queues_created_total": ("counter", "Total number of queues created", NO_LABELS),
    "rabbitmq_queues_deleted_total": ("counter", "Total number of queues deleted", NO_LABELS),
    # global message counters
    "rabbitmq_global_messages_received_total": (
        "counter", "Total number of messages received from publishers", PROTOCOL),
    "rabbitmq_global_messages_received_confirm_total": (
        "counter", "Total number of messages received from publishers expecting confirmations",
        PROTOCOL),
    "rabbitmq_global_messages_routed_total": (
        "counter", "Total number of messages routed to queues or streams", PROTOCOL),
    "rabbitmq_global_messages_unroutable_dropped_total": (
        "counter", "Total number of messages published as non-mandatory into an exchange and "
                   "dropped as unroutable", PROTOCOL),
    "rabbitmq_global_messages_unroutable_returned_total": (
        "counter", "Total number of messages published as mandatory into an exchange and "
                   "returned to the publisher as unroutable", PROTOCOL),
    "rabbitmq_global_messages_confirmed_total": (
        "counter", "Total number of messages confirmed to publishers", PROTOCOL),
    "rabbitmq_global_messages_delivered_total": (
        "counter", "Total number of messages delivered to consumers", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_delivered_consume_manual_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.consume with "
                   "manual acknowledgment", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_delivered_consume_auto_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.consume with "
                   "automatic acknowledgment", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_delivered_get_manual_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.get with "
                   "manual acknowledgment", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_delivered_get_auto_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.get with "
                   "automatic acknowledgment", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_get_empty_total": (
        "counter", "Total number of times basic.get operations fetched no message",
        PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_redelivered_total": (
        "counter", "Total number of messages redelivered to consumers", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_messages_acknowledged_total": (
        "counter", "Total number of messages acknowledged by consumers", PROTOCOL_QUEUE_TYPE),
    "rabbitmq_global_publishers": ("gauge", "Current number of publishers", PROTOCOL),
    "rabbitmq_global_consumers": ("gauge", "Current number of consumers", PROTOCOL),
    # the node's resources and alarms
    "rabbitmq_process_open_fds": ("gauge", "Open file descriptors", NO_LABELS),
    "rabbitmq_process_max_fds": ("gauge", "Open file descriptors limit", NO_LABELS),
    "rabbitmq_process_open_tcp_sockets": ("gauge", "Open TCP sockets", NO_LABELS),
    "rabbitmq_process_max_tcp_sockets": ("gauge", "Open TCP sockets limit", NO_LABELS),
    "rabbitmq_process_resident_memory_bytes": ("gauge", "Memory used in bytes", NO_LABELS),
    "rabbitmq_resident_memory_limit_bytes": ("gauge", "Memory high watermark in bytes", NO_LABELS),
    "rabbitmq_disk_space_available_bytes": ("gauge", "Disk space available in bytes", NO_LABELS),
    "rabbitmq_disk_space_available_limit_bytes": (
        "gauge", "Free disk space low watermark in bytes", NO_LABELS),
    "rabbitmq_alarms_memory_used_watermark": (
        "untyped", "is 1 if VM memory watermark alarm is in effect", NO_LABELS),
    "rabbitmq_alarms_free_disk_space_watermark": (
        "untyped", "is 1 if free disk space watermark alarm is in effect", NO_LABELS),
    "rabbitmq_alarms_file_descriptor_limit": (
        "untyped", "is 1 if file descriptor limit alarm is in effect", NO_LABELS),
    # identity (every dashboard panel joins on it)
    "rabbitmq_build_info": ("untyped", "RabbitMQ & Erlang/OTP version info", None),
    "rabbitmq_identity_info": ("untyped", "RabbitMQ node & cluster identity info", None),
}


def test_metric_families(prometheus):
    """The families Grafana's RabbitMQ-Overview dashboard (and most alerting
    rules) read, with RabbitMQ's TYPE, HELP and labels."""
    expo = scrape(prometheus)
    wrong = []
    for name, (mtype, help_text, label_names) in FAMILIES.items():
        fam = expo.families.get(name)
        if fam is None or not fam.samples:
            wrong.append(f"{name}: no samples")
            continue
        if (fam.type, fam.help) != (mtype, help_text):
            wrong.append(f"{name}: TYPE {fam.type!r} HELP {fam.help!r}, "
                         f"expected {mtype!r} {help_text!r}")
        labels = [s.labels for s in fam.samples]
        if label_names is None:
            continue
        if label_names == NO_LABELS:
            ok = labels == [{}]
        elif label_names == PROTOCOL:
            ok = labels == [{"protocol": AMQP}]
        else:
            # RabbitMQ also has series for rabbit_quorum_queue and rabbit_stream_queue
            ok = ({"protocol": AMQP, "queue_type": CLASSIC} in labels
                  and all(set(lbl) == label_names and lbl["protocol"] == AMQP for lbl in labels))
        if not ok:
            wrong.append(f"{name}: series {labels}, expected labels {sorted(label_names)}")
    assert not wrong, "\n".join(wrong)
    assert all(v >= 0 for name, (t, _, _) in FAMILIES.items() if t == "counter"
               for v in (s.value for s in expo.family(name).samples))
    for name in ("rabbitmq_process_open_fds", "rabbitmq_process_max_fds",
                 "rabbitmq_process_resident_memory_bytes", "rabbitmq_resident_memory_limit_bytes",
                 "rabbitmq_disk_space_available_bytes", "rabbitmq_process_max_tcp_sockets"):
        assert expo.value(name) > 0, name
    assert expo.value("rabbitmq_process_open_fds") <= expo.value("rabbitmq_process_max_fds")
    for name in ("rabbitmq_alarms_memory_used_watermark", "rabbitmq_alarms_free_disk_space_watermark",
                 "rabbitmq_alarms_file_descriptor_limit"):
        assert expo.value(name) in (0, 1), name


def test_identity_and_build_info(prometheus, mgmt):
    """rabbitmq_identity_info names the node and cluster as /api/overview does
    (the dashboards' ``* on(instance) group_left(rabbitmq_cluster, rabbitmq_node)
    rabbitmq_identity_info`` join); rabbitmq_build_info the versions.  Both
    are in /metrics and /metrics/per-object."""
    overview = mgmt.get("/api/overview").body
    for path in ("/metrics", "/metrics/per-object"):
        expo = scrape(prometheus, path)
        [identity] = expo.family("rabbitmq_identity_info").samples
        assert identity.value == 1
        assert set(identity.labels) == {"rabbitmq_node", "rabbitmq_cluster",
                                        "rabbitmq_cluster_permanent_id"}
        assert identity.labels["rabbitmq_node"] == overview["node"]
        assert identity.labels["rabbitmq_cluster"] == overview["cluster_name"]
        assert identity.labels["rabbitmq_cluster_permanent_id"]
        [build] = expo.family("rabbitmq_build_info").samples
        assert build.value == 1
        # product_name / product_version are added only when configured
        assert {"rabbitmq_version", "prometheus_plugin_version", "prometheus_client_version",
                "erlang_version"} <= set(build.labels) <= {
                    "rabbitmq_version", "prometheus_plugin_version", "prometheus_client_version",
                    "erlang_version", "product_name", "product_version"}
        assert all(build.labels.values()), build.labels
        assert build.labels["rabbitmq_version"] == overview["rabbitmq_version"]
        if overview.get("erlang_version"):
            assert build.labels["erlang_version"] == overview["erlang_version"]


def test_aggregated_metrics_have_no_per_object_labels(prometheus):
    """/metrics is aggregated: no series is labelled with a vhost, queue,
    exchange or channel."""
    expo = scrape(prometheus)
    labelled = [(s.name, s.labels) for f in expo.families.values() for s in f.samples
                if {"vhost", "queue", "exchange", "channel"} & set(s.labels)]
    assert not labelled, labelled[:10]


# --- values that follow activity ------------------------------------------------------------

@pytest.fixture
def vhost_channel(connect_as, mgmt, vhost):
    """A connection to a fresh vhost and a channel in confirm mode on it."""
    conn = connect_as(mgmt.user, vhost, mgmt.password)
    channel = conn.channel()
    channel.confirm_delivery()
    return conn, channel


def test_message_counters_follow_activity(prometheus, vhost_channel, uid):
    """The rabbitmq_global_* counters grow with publishes, routing, returns,
    drops, confirms, gets, deliveries, redeliveries and acks."""
    conn, ch = vhost_channel
    queue, other, empty = f"{uid}.q", f"{uid}.other", f"{uid}.empty"
    for name in (queue, other, empty):
        ch.queue_declare(name)
    before = scrape(prometheus)

    n = 5
    for i in range(n):
        ch.basic_publish("", queue, f"m{i}".encode())
    for i in range(2):
        ch.basic_publish("", other, f"o{i}".encode())
    with pytest.raises(pika.exceptions.UnroutableError):  # mandatory: returned (then confirmed)
        ch.basic_publish("", f"{uid}.nowhere", b"r", mandatory=True)
    ch.basic_publish("", f"{uid}.nowhere", b"d")           # not mandatory: dropped (and confirmed)
    published = n + 2 + 2

    method, _, _ = ch.basic_get(queue, auto_ack=False)     # get, manual ack
    ch.basic_ack(method.delivery_tag)
    method, _, _ = ch.basic_get(queue, auto_ack=True)      # get, auto ack
    assert method is not None
    method, _, _ = ch.basic_get(queue, auto_ack=False)     # get, then requeue ...
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, _, _ = ch.basic_get(queue, auto_ack=False)     # ... and get it again, redelivered
    assert method.redelivered
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get(empty, auto_ack=True)[0] is None   # get-empty

    received = []

    def on_message(c, m, p, body):
        received.append(body)
        c.basic_ack(m.delivery_tag)

    ch.basic_consume(queue, on_message)                    # consume, manual ack: the 2 left
    ch.basic_consume(other, lambda c, m, p, b: received.append(b), auto_ack=True)  # auto ack: 2
    deadline = time.monotonic() + 10
    while len(received) < 4 and time.monotonic() < deadline:
        pump(conn, 0.1)
    assert len(received) == 4, received

    def between():
        pump(conn, 0.01)

    classic = {"protocol": AMQP, "queue_type": CLASSIC}
    poll_growth(prometheus, before, [
        ("rabbitmq_global_messages_received_total", published, {"protocol": AMQP}),
        ("rabbitmq_global_messages_received_confirm_total", published, {"protocol": AMQP}),
        ("rabbitmq_global_messages_routed_total", n + 2, {"protocol": AMQP}),
        ("rabbitmq_global_messages_unroutable_returned_total", 1, {"protocol": AMQP}),
        ("rabbitmq_global_messages_unroutable_dropped_total", 1, {"protocol": AMQP}),
        ("rabbitmq_global_messages_confirmed_total", published, {"protocol": AMQP}),
        ("rabbitmq_global_messages_delivered_get_manual_ack_total", 3, classic),
        ("rabbitmq_global_messages_delivered_get_auto_ack_total", 1, classic),
        ("rabbitmq_global_messages_get_empty_total", 1, classic),
        ("rabbitmq_global_messages_redelivered_total", 1, classic),
        ("rabbitmq_global_messages_delivered_consume_manual_ack_total", 2, classic),
        ("rabbitmq_global_messages_delivered_consume_auto_ack_total", 2, classic),
        # every delivery, by get or consume
        ("rabbitmq_global_messages_delivered_total", 8, classic),
        # basic.ack only (the nack is not counted)
        ("rabbitmq_global_messages_acknowledged_total", 4, classic),
    ], between=between)


def test_churn_counters_follow_activity(prometheus, connect_as, mgmt, vhost, uid):
    """Connections and channels opened and closed, queues declared, created
    and deleted."""
    before = scrape(prometheus)
    conn = connect_as(mgmt.user, vhost, mgmt.password)
    ch = conn.channel()
    extra = conn.channel()
    extra.close()
    queue = f"{uid}.q"
    ch.queue_declare(queue)           # created
    ch.queue_declare(queue)           # declared again, not created
    ch.queue_declare(queue, passive=True)
    ch.queue_delete(queue)
    conn.close()                      # closes ``ch`` too
    after = poll_growth(prometheus, before, [
        ("rabbitmq_connections_opened_total", 1, {}),
        ("rabbitmq_connections_closed_total", 1, {}),
        ("rabbitmq_channels_opened_total", 2, {}),
        ("rabbitmq_channels_closed_total", 2, {}),
        ("rabbitmq_queues_declared_total", 2, {}),
        ("rabbitmq_queues_created_total", 1, {}),
        ("rabbitmq_queues_deleted_total", 1, {}),
    ])
    # nothing else declares queues meanwhile: exactly 2 declared (the passive
    # declare is not counted), 1 created
    for name, delta in (("rabbitmq_queues_declared_total", 2), ("rabbitmq_queues_created_total", 1)):
        assert after.value(name) - before.value(name) == delta, name


def test_gauges_follow_state(prometheus, connect_as, mgmt, vhost, uid):
    """rabbitmq_connections, _channels, _consumers and _queues go up and down
    with the broker's state."""
    before = scrape(prometheus)
    b = {name: before.value(name) for name in
         ("rabbitmq_connections", "rabbitmq_channels", "rabbitmq_consumers", "rabbitmq_queues")}
    conns = [connect_as(mgmt.user, vhost, mgmt.password) for _ in range(2)]
    channels = [conns[0].channel(), conns[0].channel(), conns[1].channel()]
    queues = [f"{uid}.q{i}" for i in range(2)]
    for q in queues:
        channels[0].queue_declare(q)
    channels[2].basic_consume(queues[0], lambda *a: None)

    def at_least(expected):
        return lambda e: all(e.value(k) >= v for k, v in expected.items())

    def at_most(expected):
        return lambda e: all(e.value(k) <= v for k, v in expected.items())

    up = {"rabbitmq_connections": b["rabbitmq_connections"] + 2,
          "rabbitmq_channels": b["rabbitmq_channels"] + 3,
          "rabbitmq_consumers": b["rabbitmq_consumers"] + 1,
          "rabbitmq_queues": b["rabbitmq_queues"] + 2}
    def values(e):
        return {k: e.value(k) for k in up}

    peak = poll_metrics(prometheus, at_least(up), f"the gauges to reach {up}", show=values)
    p = {k: peak.value(k) for k in up}
    channels[0].queue_delete(queues[1])
    channels[1].close()
    conns[1].close()                  # with its consumer
    down = {"rabbitmq_connections": p["rabbitmq_connections"] - 1,
            "rabbitmq_channels": p["rabbitmq_channels"] - 2,
            "rabbitmq_consumers": p["rabbitmq_consumers"] - 1,
            "rabbitmq_queues": p["rabbitmq_queues"] - 1}
    poll_metrics(prometheus, at_most(down), f"the gauges to fall to {down}", show=values)


# --- per-object metrics ------------------------------------------------------------

QUEUE_FAMILIES = {
    "rabbitmq_queue_messages_ready": "Messages ready to be delivered to consumers",
    "rabbitmq_queue_messages_unacked": "Messages delivered to consumers but not yet acknowledged",
    "rabbitmq_queue_messages": "Sum of ready and unacknowledged messages - total queue depth",
    "rabbitmq_queue_consumers": "Consumers on a queue",
}


def queue_state(expo: Exposition, vhost: str, queue: str) -> dict:
    return {name: expo.value(name, vhost=vhost, queue=queue) for name in QUEUE_FAMILIES}


def test_per_object_queue_series(prometheus, vhost_channel, vhost, uid):
    """/metrics/per-object has one series per queue, labelled
    {vhost, queue}, with its ready and unacknowledged messages, depth and
    consumers; /metrics has their sums."""
    conn, ch = vhost_channel
    busy, idle = f"{uid}.busy", f"{uid}.idle"
    ch.queue_declare(busy)
    ch.queue_declare(idle)
    for i in range(5):
        ch.basic_publish("", busy, f"m{i}".encode())
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(busy, lambda *a: None)  # holds one message unacknowledged

    def between():
        pump(conn, 0.01)

    want = {busy: {"rabbitmq_queue_messages_ready": 4, "rabbitmq_queue_messages_unacked": 1,
                   "rabbitmq_queue_messages": 5, "rabbitmq_queue_consumers": 1},
            idle: {"rabbitmq_queue_messages_ready": 0, "rabbitmq_queue_messages_unacked": 0,
                   "rabbitmq_queue_messages": 0, "rabbitmq_queue_consumers": 0}}
    expo = poll_metrics(
        prometheus,
        lambda e: all(queue_state(e, vhost, q) == w for q, w in want.items()),
        f"per-object series {want}", path="/metrics/per-object", between=between,
        show=lambda e: {q: {n: [s.value for s in e.samples(n, vhost=vhost, queue=q)]
                            for n in QUEUE_FAMILIES} for q in want})
    for name, help_text in QUEUE_FAMILIES.items():
        fam = expo.family(name)
        assert (fam.type, fam.help) == ("gauge", help_text), name
        assert all(set(s.labels) == {"vhost", "queue"} for s in fam.samples), name
    assert {s.labels["queue"] for s in expo.samples("rabbitmq_queue_messages", vhost=vhost)} \
        == {busy, idle}
    for name in ("rabbitmq_connections", "rabbitmq_channels", "rabbitmq_queues"):
        assert expo.family(name).type == "gauge" and len(expo.family(name).samples) == 1, name

    # /metrics: the same families, summed over all queues of all vhosts
    def sums_match(aggregated: Exposition) -> bool:
        per_object = scrape(prometheus, "/metrics/per-object")
        return all(aggregated.value(name) == per_object.total(name) for name in QUEUE_FAMILIES) \
            and aggregated.value("rabbitmq_queue_messages_ready") >= 4
    poll_metrics(prometheus, sums_match, "/metrics to sum the per-object queue series",
                 between=between)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def test_label_values_are_escaped(prometheus, vhost_factory, connect_as, mgmt, uid, rabbitmq):
    """Quotes, backslashes and newlines in vhost and queue names are escaped
    in label values (\\" \\\\ \\n), so the exposition still parses.  (A queue
    name cannot hold a newline: queue.declare strips CR and LF.)"""
    vhost = vhost_factory('.v"x\\y\nz')
    queue = f'{uid}.q"a\\b'
    conn = connect_as(mgmt.user, vhost, mgmt.password)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"x")
    if rabbitmq:
        # RabbitMQ 3.10 writes them raw: the vhost's newline splits the line
        raw = f'vhost="{vhost}",queue="{queue}"'
        poll(lambda: prometheus.get("/metrics/per-object")[2], lambda text: raw in text,
             timeout=POLL_TIMEOUT, what="the raw series")
        pytest.xfail("RabbitMQ 3.10 does not escape label values: "
                     f"{'rabbitmq_queue_messages{' + raw + '} 1'!r}")
    expo = poll_metrics(prometheus,
                        lambda e: e.samples("rabbitmq_queue_messages", vhost=vhost, queue=queue),
                        "the queue's series", path="/metrics/per-object")
    assert expo.value("rabbitmq_queue_messages", vhost=vhost, queue=queue) in (0, 1)
    text = prometheus.get("/metrics/per-object")[2]
    assert f'vhost="{escape_label_value(vhost)}"' in text
    assert f'queue="{escape_label_value(queue)}"' in text


# --- Warren's own additions ------------------------------------------------------------

def test_oldest_ready_message_age(prometheus, vhost_channel, vhost, uid, rabbitmq):
    """Warren only: warren_queue_oldest_ready_message_age_seconds{vhost,queue},
    a gauge of how long the queue's oldest ready message has waited (0 when
    it has none)."""
    if rabbitmq:
        pytest.skip("a Warren-only metric")
    conn, ch = vhost_channel
    queue, empty = f"{uid}.q", f"{uid}.empty"
    ch.queue_declare(queue)
    ch.queue_declare(empty)
    ch.basic_publish("", queue, b"old")
    time.sleep(1.2)
    ch.basic_publish("", queue, b"new")
    name = "warren_queue_oldest_ready_message_age_seconds"
    expo = scrape(prometheus, "/metrics/per-object")
    fam = expo.family(name)
    assert fam.type == "gauge" and fam.help
    assert all(set(s.labels) == {"vhost", "queue"} for s in fam.samples)
    assert 1.0 <= expo.value(name, vhost=vhost, queue=queue) < 60
    assert expo.value(name, vhost=vhost, queue=empty) == 0
    ch.basic_get(queue, auto_ack=True)   # the old one goes: the new one is younger
    expo = scrape(prometheus, "/metrics/per-object")
    assert expo.value(name, vhost=vhost, queue=queue) < 1.0
    ch.basic_get(queue, auto_ack=True)
    expo = scrape(prometheus, "/metrics/per-object")
    assert expo.value(name, vhost=vhost, queue=queue) == 0
    assert not scrape(prometheus).samples(name, queue=queue)  # per-object only


def test_oldest_unacked_message_age_on_a_durable_queue(prometheus, vhost_channel, vhost, uid,
                                                       rabbitmq):
    """Warren only: warren_queue_oldest_unacked_message_age_seconds{vhost,queue},
    how long the longest-outstanding delivery has waited for its ack; and the
    ready age on a disk queue, where a requeued message is the oldest again."""
    if rabbitmq:
        pytest.skip("a Warren-only metric")
    conn, ch = vhost_channel
    queue = f"{uid}.durable"
    ch.queue_declare(queue, durable=True)
    ch.basic_publish("", queue, b"first", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", queue, b"second", pika.BasicProperties(delivery_mode=2))
    ready, unacked = ("warren_queue_oldest_ready_message_age_seconds",
                      "warren_queue_oldest_unacked_message_age_seconds")
    expo = scrape(prometheus, "/metrics/per-object")
    fam = expo.family(unacked)
    assert fam.type == "gauge" and fam.help
    assert expo.value(unacked, vhost=vhost, queue=queue) == 0
    method, _, body = ch.basic_get(queue, auto_ack=False)
    assert body == b"first"
    time.sleep(1.2)
    expo = scrape(prometheus, "/metrics/per-object")
    assert 1.0 <= expo.value(unacked, vhost=vhost, queue=queue) < 60
    assert 1.0 <= expo.value(ready, vhost=vhost, queue=queue) < 60
    ch.basic_nack(method.delivery_tag, requeue=True)
    # basic.nack has no reply: a passive declare behind it on the channel
    # returns only once the broker has handled the nack.
    ch.queue_declare(queue, passive=True)
    expo = scrape(prometheus, "/metrics/per-object")
    assert expo.value(unacked, vhost=vhost, queue=queue) == 0
    assert 1.0 <= expo.value(ready, vhost=vhost, queue=queue) < 60
    ch.queue_purge(queue)
    expo = scrape(prometheus, "/metrics/per-object")
    assert expo.value(ready, vhost=vhost, queue=queue) == 0
    ch.queue_delete(queue)
