"""Definitions round trip with RabbitMQ 3.10's own export format.

``fixtures/rabbitmq-3.10-definitions.json`` is ``GET /api/definitions`` of a
real RabbitMQ 3.10.8 node (with rabbitmq_management) on which these objects
were made through the management API:

* vhosts ``defs.one`` (made with a description and tags, which 3.10 does not
  export: its vhost entries are just ``{"name": ...}``) and ``defs.two`` with
  a ``max-queues`` limit of 10 (exported as a ``vhost-limits`` runtime
  parameter named ``limits``);
* users ``defs.admin`` (administrator), ``defs.mgr`` (management), both made
  with a password (so SHA-256 hashes), and ``defs.pol`` (policymaker) made
  with a ``password_hash`` under ``rabbit_password_hashing_sha512``; tags are
  exported as a JSON list; the passwords are in ``PASSWORDS`` below;
* permissions and topic permissions;
* durable exchanges: direct with ``alternate-exchange``, fanout, internal
  topic, auto-delete headers;
* durable queues: classic with ``x-message-ttl``/``x-max-length``/
  ``x-dead-letter-exchange``, quorum with ``x-delivery-limit``, priority
  (``x-max-priority``), and a plain one in ``defs.two``;
* queue and exchange-to-exchange bindings with routing keys, headers bindings
  with ``x-match`` arguments;
* policies ``pq`` (queues, ``message-ttl`` + ``max-length``, priority 5) and
  ``px`` (exchanges, ``alternate-exchange``), and the operator policy ``op``
  (``max-length``; exported under ``parameters`` as component
  ``operator_policy``).

The test imports that file into a fresh broker (``POST /api/definitions``,
204), checks every object through the API and the users' logins over AMQP,
compares the broker's own export with the fixture semantically, restarts the
broker and compares again.  A second test takes the way back: the broker's
export (after importing the fixture) is imported into a fresh RabbitMQ 3.10
node, which must end up with the same objects, logins included.  It needs
the ``rabbitmq-server`` package and is skipped where it is not installed.  Ignored as broker-specific: ``rabbit_version``,
``rabbitmq_version``, ``product_*``, ``global_parameters``
(``internal_cluster_id``, ``cluster_name``), the users' ``limits``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pika
import pytest

from brokerctl import WarrenProcess, pika_params
from mgmt import Mgmt, q

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "rabbitmq-3.10-definitions.json"
STAND_IN = HERE / "rabbitmq-as-warren.sh"

PASSWORDS = {
    "guest": "guest",
    "defs.admin": "admin-secret",
    "defs.mgr": "mgr-secret",
    "defs.pol": "pol-secret",
}
LOGIN_VHOST = {"guest": "/", "defs.admin": "defs.one", "defs.mgr": "defs.one", "defs.pol": "defs.two"}
PARAMETER_COMPONENTS = ("operator_policy", "vhost-limits")


def _j(value) -> str:
    return json.dumps(value, sort_keys=True)


def _tags(tags) -> frozenset:
    if isinstance(tags, str):
        return frozenset(t for t in (s.strip() for s in tags.split(",")) if t)
    return frozenset(tags or ())


def _reachable(api) -> bool:
    try:
        return api.get("/api/whoami").status == 200
    except OSError:
        return False


def _wait_reachable(api, timeout=60.0, what="the management API"):
    deadline = time.monotonic() + timeout
    while not _reachable(api):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def semantic(defs: dict) -> dict:
    """The parts of a definitions document that must survive a round trip."""
    return {
        "users": {(u["name"], u.get("password_hash"), u.get("hashing_algorithm"), _tags(u.get("tags")))
                  for u in defs.get("users", [])},
        "vhosts": {v["name"] for v in defs.get("vhosts", [])},
        "permissions": {(p["user"], p["vhost"], p["configure"], p["write"], p["read"])
                        for p in defs.get("permissions", [])},
        "topic_permissions": {(p["user"], p["vhost"], p["exchange"], p["write"], p["read"])
                              for p in defs.get("topic_permissions", [])},
        "policies": {(p["vhost"], p["name"], p["pattern"], p.get("apply-to", "all"),
                      _j(p["definition"]), p.get("priority", 0))
                     for p in defs.get("policies", [])},
        "queues": {(x["name"], x["vhost"], x["durable"], x["auto_delete"], _j(x.get("arguments", {})))
                   for x in defs.get("queues", [])},
        "exchanges": {(x["name"], x["vhost"], x["type"], x["durable"], x["auto_delete"],
                       x.get("internal", False), _j(x.get("arguments", {})))
                      for x in defs.get("exchanges", [])
                      if x["name"] and not x["name"].startswith("amq.")},
        "bindings": {(b["vhost"], b["source"], b["destination"], b["destination_type"],
                      b["routing_key"], _j(b.get("arguments", {})))
                     for b in defs.get("bindings", [])},
        "parameters": {(p["vhost"], p["component"], p["name"], _j(p["value"]))
                       for p in defs.get("parameters", [])
                       if p["component"] in PARAMETER_COMPONENTS},
    }


def assert_same_definitions(actual: dict, expected: dict) -> None:
    a, e = semantic(actual), semantic(expected)
    diffs = []
    for key in e:
        if a[key] != e[key]:
            diffs.append(f"{key}: missing {sorted(e[key] - a[key], key=repr)!r}; "
                         f"unexpected {sorted(a[key] - e[key], key=repr)!r}")
    assert not diffs, "export differs from the fixture:\n" + "\n".join(diffs)


def _get(api, path):
    r = api.get(path)
    assert r.status == 200, f"GET {path}: HTTP {r.status} {r.body!r}"
    return r.body


def check_objects(api: Mgmt, node, fixture: dict) -> None:
    for u in fixture["users"]:
        got = _get(api, f"/api/users/{q(u['name'])}")
        assert got["password_hash"] == u["password_hash"], u["name"]
        assert got["hashing_algorithm"] == u["hashing_algorithm"], u["name"]
        assert _tags(got["tags"]) == _tags(u["tags"]), u["name"]
    for name, password in PASSWORDS.items():
        creds = pika.PlainCredentials(name, password)
        conn = pika.BlockingConnection(pika_params(node.broker, credentials=creds,
                                                   virtual_host=LOGIN_VHOST[name]))
        try:
            assert conn.channel().is_open
        finally:
            conn.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika_params(
            node.broker, credentials=pika.PlainCredentials("defs.pol", "wrong"),
            virtual_host="defs.two")).close()

    for v in fixture["vhosts"]:
        assert _get(api, f"/api/vhosts/{q(v['name'])}")["name"] == v["name"]
    for p in fixture["permissions"]:
        got = _get(api, f"/api/permissions/{q(p['vhost'])}/{q(p['user'])}")
        assert {k: got[k] for k in ("user", "vhost", "configure", "write", "read")} == p
    for p in fixture["topic_permissions"]:
        got = _get(api, f"/api/topic-permissions/{q(p['vhost'])}/{q(p['user'])}")
        assert p in [{k: g[k] for k in ("user", "vhost", "exchange", "write", "read")} for g in got]
    for x in fixture["exchanges"]:
        got = _get(api, f"/api/exchanges/{q(x['vhost'])}/{q(x['name'])}")
        for k in ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments"):
            assert got[k] == x[k], (x["name"], k, got[k], x[k])
    for x in fixture["queues"]:
        got = _get(api, f"/api/queues/{q(x['vhost'])}/{q(x['name'])}")
        for k in ("name", "vhost", "durable", "auto_delete", "arguments"):
            assert got[k] == x[k], (x["name"], k, got[k], x[k])
        assert got["type"] == x["arguments"].get("x-queue-type", "classic"), (x["name"], got["type"])
    want = {}
    for b in fixture["bindings"]:
        want.setdefault(b["vhost"], set()).add(
            (b["source"], b["destination"], b["destination_type"], b["routing_key"], _j(b["arguments"])))
    for vhost, expected in want.items():
        got = {(b["source"], b["destination"], b["destination_type"], b["routing_key"], _j(b["arguments"]))
               for b in _get(api, f"/api/bindings/{q(vhost)}") if b["source"]}
        assert got == expected, vhost
    for p in fixture["policies"]:
        got = _get(api, f"/api/policies/{q(p['vhost'])}/{q(p['name'])}")
        for k in ("vhost", "name", "pattern", "apply-to", "definition", "priority"):
            assert got[k] == p[k], (p["name"], k, got[k], p[k])
    for p in fixture["parameters"]:
        if p["component"] == "operator_policy":
            got = _get(api, f"/api/operator-policies/{q(p['vhost'])}/{q(p['name'])}")
            assert got["vhost"] == p["vhost"] and got["name"] == p["name"]
            for k in ("pattern", "apply-to", "definition", "priority"):
                assert got[k] == p["value"][k], (p["name"], k, got[k], p["value"][k])
        elif p["component"] == "vhost-limits":
            got = _get(api, f"/api/vhost-limits/{q(p['vhost'])}")
            assert got == [{"vhost": p["vhost"], "value": p["value"]}]


def _fresh_broker_with_fixture(broker_factory):
    """A fresh broker into which the fixture was imported."""
    fixture = json.loads(FIXTURE.read_text())
    node = broker_factory.start()
    api = Mgmt(node.mgmt_url, "guest", "guest")
    _wait_reachable(api)
    r = api.post("/api/definitions", fixture)
    assert r.status == 204, f"POST /api/definitions: HTTP {r.status} {r.body!r}"
    return node, api, fixture


@pytest.mark.timeout(300)  # RabbitMQ takes a while to boot, twice
def test_definitions_roundtrip(broker_factory):
    node, api, fixture = _fresh_broker_with_fixture(broker_factory)
    check_objects(api, node, fixture)
    assert_same_definitions(_get(api, "/api/definitions"), fixture)

    node.restart()
    _wait_reachable(api, what="the management API after the restart")
    assert_same_definitions(_get(api, "/api/definitions"), fixture)
    check_objects(api, node, fixture)


def _rabbitmq_installed() -> bool:
    return bool(shutil.which("rabbitmq-server") or os.access("/usr/sbin/rabbitmq-server", os.X_OK))


@pytest.mark.timeout(300)
def test_export_imports_into_rabbitmq(broker_factory, tmp_path):
    """The broker's own export, taken after importing RabbitMQ's, goes back
    into a fresh RabbitMQ 3.10 node unchanged: same objects, same logins."""
    if not _rabbitmq_installed():
        pytest.skip("needs RabbitMQ (apt-get install rabbitmq-server) to import into")
    _, api, fixture = _fresh_broker_with_fixture(broker_factory)
    exported = _get(api, "/api/definitions")

    rabbit = WarrenProcess(STAND_IN, tmp_path / "rabbitmq", mgmt_port=None)
    try:
        rabbit.start(timeout=120)
        rapi = Mgmt(rabbit.mgmt_url, "guest", "guest")
        _wait_reachable(rapi, what="RabbitMQ's management API")
        r = rapi.post("/api/definitions", exported)
        assert r.status in (201, 204), f"RabbitMQ refused the export: HTTP {r.status} {r.body!r}"
        assert_same_definitions(_get(rapi, "/api/definitions"), fixture)
        check_objects(rapi, rabbit, fixture)
    finally:
        rabbit.stop()
