"""The management HTTP API's vhost, user and permission endpoints, and the
bits of /api/overview and /api/whoami that tools read (checked against
RabbitMQ 3.10's rabbitmq_management).

What RabbitMQ 3.10 answers (the assertions below):

* PUT creates with 201 and updates with 204, both with an empty body; DELETE
  is 204; GET or DELETE of a missing object is 404 with
  ``{"error": "Object Not Found", "reason": "Not Found"}``.  JSON responses
  are ``application/json``.
* topic permissions are one resource per (vhost, user): the first PUT is 201,
  a PUT for another exchange is 204, one DELETE removes them all.
* 401 everywhere for authentication and authorisation failures:
  bad credentials ``{"error": "not_authorized", "reason": "Login failed"}``
  (US spelling) and no credentials (empty body) both carry
  ``WWW-Authenticate: Basic realm="RabbitMQ Management"``; a user without a
  management tag gets ``{"error": "not_authorised", "reason": "Not management
  user"}`` and one lacking administrator ``{"error": "not_authorised",
  "reason": "Not administrator user"}`` (UK spelling), neither with
  WWW-Authenticate.
* ``monitoring`` users see every vhost but not users or permissions;
  ``management`` users see only the vhosts they have a permission entry on.
* PUT /api/users/{name} needs ``tags`` (400 ``tags_not_present``); a PUT
  without ``password`` and ``password_hash`` leaves the user without a usable
  password (``password_hash`` becomes ""); both at once is 400
  ``both_password_and_password_hash_are_provided``.  A supplied
  ``password_hash`` is stored verbatim.
* creating a vhost gives its creator full permissions on it.
"""

from __future__ import annotations

import time
import uuid

import pika.exceptions
import pytest

from mgmt import SHA256, password_hash, poll, q

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
LOGIN_FAILED = {"error": "not_authorized", "reason": "Login failed"}
NOT_MANAGEMENT = {"error": "not_authorised", "reason": "Not management user"}
NOT_ADMIN = {"error": "not_authorised", "reason": "Not administrator user"}
REALM = 'Basic realm="RabbitMQ Management"'


def is_json(result) -> bool:
    return (result.headers.get("Content-Type") or "").startswith("application/json")


def assert_not_found(result):
    assert result.status == 404
    assert result.body == NOT_FOUND
    assert is_json(result)


def assert_empty(result, status):
    assert result.status == status, result.body
    assert result.raw == b""


# --- whoami / overview -------------------------------------------------------------

def test_whoami(mgmt, broker, user_factory):
    status, body = mgmt.get("/api/whoami")
    assert status == 200
    assert body["name"] == broker.user
    assert "administrator" in body["tags"]
    u = user_factory(tags="management")
    result = mgmt.as_user(u.name, u.password).get("/api/whoami")
    assert result.status == 200 and is_json(result)
    assert result.body == {"name": u.name, "tags": ["management"]}
    u = user_factory(tags="monitoring,policymaker")
    assert mgmt.as_user(u.name, u.password).get("/api/whoami").body == \
        {"name": u.name, "tags": ["monitoring", "policymaker"]}


def test_overview_shape(mgmt, broker):
    result = mgmt.get("/api/overview")
    assert result.status == 200 and is_json(result)
    body = result.body
    for key in ("management_version", "rabbitmq_version", "product_name", "product_version", "node",
                "cluster_name"):
        assert isinstance(body.get(key), str) and body[key], key
    totals = body["object_totals"]
    assert set(totals) >= {"channels", "connections", "consumers", "exchanges", "queues"}
    assert all(isinstance(v, int) and v >= 0 for v in totals.values())
    # maps, empty while there is nothing to report
    assert isinstance(body["queue_totals"], dict)
    assert isinstance(body["message_stats"], dict)
    assert {t["name"] for t in body["exchange_types"]} >= {"direct", "fanout", "topic", "headers"}
    listeners = body["listeners"]
    assert all({"node", "protocol", "ip_address", "port"} <= set(item) for item in listeners)
    assert all(isinstance(item["port"], int) for item in listeners)
    amqp_ports = [item["port"] for item in listeners if item["protocol"] == "amqp"]
    assert amqp_ports
    if not broker.external:
        assert broker.port in amqp_ports


def test_overview_counts_messages_as_they_flow(mgmt, ch, uid):
    """message_stats: publishes, returns, deliveries, gets and acks are
    counted, with rates (RabbitMQ shows them after a statistics round)."""
    def stats():
        return mgmt.get("/api/overview").body.get("message_stats") or {}

    before = stats()
    queue = f"{uid}.counted"
    ch.queue_declare(queue)
    for i in range(5):
        ch.basic_publish("", queue, f"m{i}".encode())
    with pytest.raises(pika.exceptions.UnroutableError):  # the channel confirms
        ch.basic_publish("", f"{uid}.nowhere", b"x", mandatory=True)
    got = [ch.basic_get(queue, auto_ack=False) for _ in range(2)]
    for method, _, _ in got:
        ch.basic_ack(method.delivery_tag)
    ch.basic_consume(queue, lambda c, m, p, b: c.basic_ack(m.delivery_tag))

    def stats_while_consuming():
        ch.connection.process_data_events(time_limit=0.1)
        return stats()

    def grew(key, n):
        return lambda s: s.get(key, 0) - before.get(key, 0) >= n

    poll(stats, grew("publish", 6), what="publishes counted")
    poll(stats, grew("return_unroutable", 1), what="the return counted")
    poll(stats, grew("get", 2), what="gets counted")
    poll(stats_while_consuming, grew("deliver", 3), what="deliveries counted")
    after = poll(stats_while_consuming, grew("ack", 5), what="acks counted")
    assert after["deliver_get"] - before.get("deliver_get", 0) >= 5
    for key in ("publish", "deliver_get", "ack"):
        assert isinstance(after[f"{key}_details"]["rate"], (int, float))


def test_overview_message_stats_cover_only_the_callers_vhosts(mgmt, user_factory, vhost_factory,
                                                             connect_as, broker):
    """A management user's overview counts the messages of its own vhosts; a
    monitoring user's (and an administrator's) the node's."""
    u = user_factory(tags="management")
    watcher = user_factory(tags="monitoring")
    mine, other = vhost_factory(".mine"), vhost_factory(".other")
    mgmt.set_permissions(mine, u.name)
    for vhost, count in ((mine, 3), (other, 7)):
        conn = connect_as(broker.user, vhost=vhost, password=broker.password)
        ch = conn.channel()
        ch.queue_declare("counted")
        for i in range(count):
            ch.basic_publish("", "counted", f"m{i}".encode())
        ch.queue_declare("counted", passive=True)  # the publishes were handled
        conn.close()

    def stats(user):
        body = mgmt.as_user(user.name, user.password).get("/api/overview").body
        return body.get("message_stats") or {}

    body = mgmt.as_user(u.name, u.password).get("/api/overview").body
    assert not {"node", "listeners", "contexts"} & set(body), "where the node listens: monitors only"
    body = mgmt.as_user(watcher.name, watcher.password).get("/api/overview").body
    assert {"node", "listeners", "contexts"} <= set(body)
    poll(lambda: stats(u), lambda s: s.get("publish", 0) >= 3, what="its vhost's publishes")
    time.sleep(1.5)
    assert stats(u)["publish"] == 3
    poll(lambda: stats(watcher), lambda s: s.get("publish", 0) >= 10,
         what="the node's publishes, for a monitoring user")


def test_management_user_reads_overview(mgmt, user_factory):
    u = user_factory(tags="management")
    status, body = mgmt.as_user(u.name, u.password).get("/api/overview")
    assert status == 200 and isinstance(body["object_totals"], dict)


# --- vhosts ------------------------------------------------------------------------

def test_vhost_lifecycle(mgmt, uid):
    name = f"{uid}.vh"
    try:
        assert_empty(mgmt.put(f"/api/vhosts/{q(name)}", {"description": "first", "tags": "a,b"}), 201)
        result = mgmt.get(f"/api/vhosts/{q(name)}")
        assert result.status == 200 and is_json(result)
        assert result.body["name"] == name
        assert result.body["description"] == "first"
        assert result.body["tags"] == ["a", "b"]
        assert result.body["tracing"] is False
        # PUT again: an update (and a full replacement: tags not given -> none)
        assert_empty(mgmt.put(f"/api/vhosts/{q(name)}", {"description": "second"}), 204)
        body = mgmt.get(f"/api/vhosts/{q(name)}").body
        assert (body["description"], body["tags"]) == ("second", [])
        status, listing = mgmt.get("/api/vhosts")
        assert status == 200
        names = [v["name"] for v in listing]
        assert "/" in names and name in names
        assert_empty(mgmt.delete(f"/api/vhosts/{q(name)}"), 204)
        assert_not_found(mgmt.get(f"/api/vhosts/{q(name)}"))
        assert_not_found(mgmt.delete(f"/api/vhosts/{q(name)}"))
        assert name not in [v["name"] for v in mgmt.get("/api/vhosts").body]
    finally:
        mgmt.delete_vhost(name, missing_ok=True)


def test_vhost_put_without_body(mgmt, uid):
    """``curl -X PUT .../api/vhosts/NAME`` (no body at all) creates the vhost."""
    name = f"{uid}.vh"
    try:
        result = mgmt.request_raw("PUT", f"/api/vhosts/{q(name)}")
        assert_empty(result, 201)
        assert mgmt.get(f"/api/vhosts/{q(name)}").status == 200
    finally:
        mgmt.delete_vhost(name, missing_ok=True)


def test_default_vhost(mgmt):
    result = mgmt.get("/api/vhosts/%2F")
    assert result.status == 200 and result.body["name"] == "/"


def test_creating_a_vhost_grants_its_creator_full_permissions(mgmt, user_factory, uid, broker):
    admin = user_factory(tags="administrator")
    name = f"{uid}.vh"
    try:
        mgmt.as_user(admin.name, admin.password).create_vhost(name)
        status, perms = mgmt.get(f"/api/vhosts/{q(name)}/permissions")
        assert status == 200
        assert perms == [{"vhost": name, "user": admin.name, "configure": ".*", "write": ".*", "read": ".*"}]
    finally:
        mgmt.delete_vhost(name, missing_ok=True)


# --- users -------------------------------------------------------------------------

def test_user_lifecycle(mgmt, uid, connect_as):
    name = f"{uid}.user"
    try:
        assert_empty(mgmt.put(f"/api/users/{q(name)}", {"password": "pw1", "tags": "management"}), 201)
        result = mgmt.get(f"/api/users/{q(name)}")
        assert result.status == 200 and is_json(result)
        body = result.body
        assert body["name"] == name
        assert body["tags"] == ["management"]
        assert body["hashing_algorithm"] == SHA256
        assert isinstance(body["password_hash"], str) and body["password_hash"]
        # the hash is salted: setting the same password again changes it
        assert_empty(mgmt.put(f"/api/users/{q(name)}", {"password": "pw1", "tags": ["monitoring", "management"]}),
                     204)
        body2 = mgmt.get(f"/api/users/{q(name)}").body
        assert body2["tags"] == ["monitoring", "management"]
        assert body2["password_hash"] != body["password_hash"]
        listing = mgmt.get("/api/users").body
        entry = next(u for u in listing if u["name"] == name)
        assert set(entry) >= {"name", "password_hash", "hashing_algorithm", "tags"}
        assert_empty(mgmt.delete(f"/api/users/{q(name)}"), 204)
        assert_not_found(mgmt.get(f"/api/users/{q(name)}"))
        assert_not_found(mgmt.delete(f"/api/users/{q(name)}"))
    finally:
        mgmt.delete_user(name, missing_ok=True)


@pytest.mark.parametrize("algorithm", [SHA256, None], ids=["sha256", "default-algorithm"])
def test_user_with_password_hash(mgmt, uid, algorithm):
    name, password = f"{uid}.user", f"secret-{uuid.uuid4().hex[:6]}"
    hashed = password_hash(password)
    body = {"password_hash": hashed, "tags": "management"}
    if algorithm:
        body["hashing_algorithm"] = algorithm
    try:
        assert_empty(mgmt.put(f"/api/users/{q(name)}", body), 201)
        stored = mgmt.get(f"/api/users/{q(name)}").body
        assert (stored["password_hash"], stored["hashing_algorithm"]) == (hashed, SHA256)
        assert mgmt.as_user(name, password).get("/api/whoami").status == 200
        result = mgmt.as_user(name, password + "x").get("/api/whoami")
        assert (result.status, result.body) == (401, LOGIN_FAILED)
    finally:
        mgmt.delete_user(name, missing_ok=True)


def test_put_user_without_password_clears_it(mgmt, vhost, user_factory, connect_as):
    u = user_factory(tags="management")
    mgmt.set_permissions(vhost, u.name)
    assert connect_as(u, vhost).is_open
    assert_empty(mgmt.put(f"/api/users/{q(u.name)}", {"tags": "management"}), 204)
    assert mgmt.get(f"/api/users/{q(u.name)}").body["password_hash"] == ""
    assert mgmt.as_user(u.name, u.password).get("/api/whoami").status == 401
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect_as(u, vhost)


def test_bad_requests(mgmt, uid, vhost, user):
    def bad(result, reason=None):
        assert result.status == 400 and result.body["error"] == "bad_request", result.body
        if reason is not None:
            assert result.body == {"error": "bad_request", "reason": reason}

    name = f"{uid}.user"
    try:
        bad(mgmt.put(f"/api/users/{q(name)}", {"password": "x"}), "tags_not_present")
        bad(mgmt.put(f"/api/users/{q(name)}", {"password": "x", "password_hash": password_hash("x"), "tags": ""}),
            "both_password_and_password_hash_are_provided")
        bad(mgmt.request_raw("PUT", f"/api/users/{q(name)}", data=b"{not json"), "not_json")
        assert_not_found(mgmt.get(f"/api/users/{q(name)}"))
    finally:
        mgmt.delete_user(name, missing_ok=True)
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    bad(mgmt.put(f"/api/permissions/{q(vhost + '.missing')}/{q(user.name)}", perms), "vhost_or_user_not_found")
    bad(mgmt.put(f"/api/permissions/{q(vhost)}/{q(user.name + '.missing')}", perms), "vhost_or_user_not_found")
    bad(mgmt.put(f"/api/permissions/{q(vhost)}/{q(user.name)}", {"configure": ".*"}))
    bad(mgmt.put(f"/api/permissions/{q(vhost)}/{q(user.name)}", dict(perms, configure="(")))
    bad(mgmt.put(f"/api/topic-permissions/{q(vhost)}/{q(user.name)}", {"write": ".*", "read": ".*"}))
    bad(mgmt.put(f"/api/topic-permissions/{q(vhost + '.missing')}/{q(user.name)}",
                 {"exchange": "amq.topic", "write": ".*", "read": ".*"}), "vhost_or_user_not_found")


# --- permissions -------------------------------------------------------------------

def test_permissions_lifecycle(mgmt, vhost, user):
    path = f"/api/permissions/{q(vhost)}/{q(user.name)}"
    assert_not_found(mgmt.get(path))
    assert_empty(mgmt.put(path, {"configure": "^c", "write": "^w", "read": "^r"}), 201)
    expected = {"user": user.name, "vhost": vhost, "configure": "^c", "write": "^w", "read": "^r"}
    result = mgmt.get(path)
    assert result.status == 200 and is_json(result)
    assert result.body == expected
    assert_empty(mgmt.put(path, {"configure": ".*", "write": ".*", "read": ""}), 204)
    expected.update(configure=".*", write=".*", read="")
    assert mgmt.get(path).body == expected
    assert expected in mgmt.get("/api/permissions").body
    assert expected in mgmt.get(f"/api/vhosts/{q(vhost)}/permissions").body
    assert mgmt.get(f"/api/users/{q(user.name)}/permissions").body == [expected]
    assert_empty(mgmt.delete(path), 204)
    assert_not_found(mgmt.get(path))
    assert_not_found(mgmt.delete(path))
    assert mgmt.get(f"/api/users/{q(user.name)}/permissions").body == []


def test_topic_permissions_lifecycle(mgmt, vhost, user):
    path = f"/api/topic-permissions/{q(vhost)}/{q(user.name)}"
    assert_not_found(mgmt.get(path))
    assert_empty(mgmt.put(path, {"exchange": "amq.topic", "write": "^a", "read": "^b"}), 201)
    # the resource is the (vhost, user) pair: another exchange is an update
    assert_empty(mgmt.put(path, {"exchange": "other", "write": "^c", "read": "^d"}), 204)
    assert_empty(mgmt.put(path, {"exchange": "amq.topic", "write": "^e", "read": "^f"}), 204)
    expected = [
        {"user": user.name, "vhost": vhost, "exchange": "amq.topic", "write": "^e", "read": "^f"},
        {"user": user.name, "vhost": vhost, "exchange": "other", "write": "^c", "read": "^d"},
    ]

    def by_exchange(items):
        return sorted(items, key=lambda p: p["exchange"])

    result = mgmt.get(path)
    assert result.status == 200 and is_json(result)
    assert by_exchange(result.body) == expected
    mine = [p for p in mgmt.get("/api/topic-permissions").body if p["user"] == user.name]
    assert by_exchange(mine) == expected
    assert by_exchange(mgmt.get(f"/api/users/{q(user.name)}/topic-permissions").body) == expected
    assert by_exchange(mgmt.get(f"/api/vhosts/{q(vhost)}/topic-permissions").body) == expected
    assert_empty(mgmt.delete(path), 204)
    assert_not_found(mgmt.get(path))
    assert_not_found(mgmt.delete(path))


def test_deleting_user_or_vhost_drops_permissions(mgmt, vhost_factory, user_factory):
    v1, v2 = vhost_factory(), vhost_factory()
    u1, u2 = user_factory(), user_factory()
    for v in (v1, v2):
        for u in (u1, u2):
            mgmt.set_permissions(v, u.name)
            mgmt.set_topic_permissions(v, u.name, "amq.topic", ".*", ".*")
    mgmt.delete_user(u1.name)
    mgmt.delete_vhost(v1)
    remaining = {(p["vhost"], p["user"]) for p in mgmt.get("/api/permissions").body} & \
        {(v, u.name) for v in (v1, v2) for u in (u1, u2)}
    assert remaining == {(v2, u2.name)}
    remaining = {(p["vhost"], p["user"]) for p in mgmt.get("/api/topic-permissions").body} & \
        {(v, u.name) for v in (v1, v2) for u in (u1, u2)}
    assert remaining == {(v2, u2.name)}


def test_missing_objects(mgmt, vhost, user, uid):
    missing = f"{uid}.missing"
    for path in (f"/api/vhosts/{q(missing)}", f"/api/users/{q(missing)}",
                 f"/api/permissions/{q(vhost)}/{q(missing)}", f"/api/permissions/{q(missing)}/{q(user.name)}",
                 f"/api/permissions/{q(vhost)}/{q(user.name)}",
                 f"/api/topic-permissions/{q(vhost)}/{q(user.name)}"):
        assert_not_found(mgmt.get(path))
        assert_not_found(mgmt.delete(path))


# --- authentication and authorisation ------------------------------------------------

def test_bad_credentials(mgmt, user):
    for api in (mgmt.as_user(user.name, user.password + "x"), mgmt.as_user(user.name + ".nobody", "x")):
        result = api.get("/api/whoami")
        assert (result.status, result.body) == (401, LOGIN_FAILED)
        assert is_json(result)
        assert result.headers.get("WWW-Authenticate") == REALM
    result = mgmt.as_user(None, None).get("/api/whoami")
    assert result.status == 401
    assert result.raw == b""
    assert result.headers.get("WWW-Authenticate") == REALM
    result = mgmt.as_user(None, None).put(f"/api/vhosts/{q(user.name)}", {})
    assert result.status == 401


def test_user_without_management_tag(mgmt, user, vhost, connect_as):
    api = mgmt.as_user(user.name, user.password)
    for path in ("/api/whoami", "/api/overview", "/api/vhosts"):
        result = api.get(path)
        assert (result.status, result.body) == (401, NOT_MANAGEMENT), path
        assert is_json(result)
        assert result.headers.get("WWW-Authenticate") is None
    # AMQP does not care about tags
    mgmt.set_permissions(vhost, user.name)
    assert connect_as(user, vhost).is_open


def test_monitoring_user(mgmt, user_factory, vhost):
    u = user_factory(tags="monitoring")
    api = mgmt.as_user(u.name, u.password)
    assert api.get("/api/whoami").body == {"name": u.name, "tags": ["monitoring"]}
    for path in ("/api/users", f"/api/users/{q(u.name)}", "/api/permissions",
                 f"/api/permissions/{q(vhost)}/{q(u.name)}", "/api/topic-permissions"):
        result = api.get(path)
        assert (result.status, result.body) == (401, NOT_ADMIN), path
        assert result.headers.get("WWW-Authenticate") is None
    # every vhost, with or without permissions on it
    names = [v["name"] for v in api.get("/api/vhosts").body]
    assert vhost in names and "/" in names
    result = api.put(f"/api/vhosts/{q(vhost + '.new')}", {})
    assert (result.status, result.body) == (401, NOT_ADMIN)


def test_management_user_sees_only_its_vhosts(mgmt, user_factory, vhost_factory):
    u = user_factory(tags="management")
    mine, empty_perms, other = vhost_factory(".mine"), vhost_factory(".empty"), vhost_factory(".other")
    mgmt.set_permissions(mine, u.name)
    mgmt.set_permissions(empty_perms, u.name, "", "", "")
    api = mgmt.as_user(u.name, u.password)
    status, listing = api.get("/api/vhosts")
    assert status == 200
    assert sorted(v["name"] for v in listing) == sorted([mine, empty_perms])
    for path in ("/api/users", "/api/permissions", f"/api/users/{q(u.name)}"):
        assert (api.get(path).status, api.get(path).body) == (401, NOT_ADMIN), path
    # single vhosts, even its own, are an administrator endpoint in 3.10
    assert (api.get(f"/api/vhosts/{q(mine)}").status, api.get(f"/api/vhosts/{q(mine)}").body) == (401, NOT_ADMIN)
    assert api.put(f"/api/vhosts/{q(other + '.new')}", {}).status == 401


# --- nodes -------------------------------------------------------------------------

NOT_MONITOR = {"error": "not_authorised", "reason": "Not monitor user"}
NODE_FIGURES = ("mem_used", "mem_limit", "disk_free", "disk_free_limit", "fd_used", "fd_total",
                "sockets_used", "uptime")


def test_nodes(mgmt, user_factory):
    """One node; its figures (RabbitMQ lists them after its first statistics
    round, hence the polling); monitoring users and administrators only."""
    import time
    deadline = time.monotonic() + 30
    while True:
        status, nodes = mgmt.get("/api/nodes")
        assert status == 200 and len(nodes) == 1
        if all(k in nodes[0] for k in NODE_FIGURES) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    node = nodes[0]
    assert isinstance(node["name"], str) and node["name"]
    assert (node["type"], node["running"]) == ("disc", True)
    for key in NODE_FIGURES:
        assert isinstance(node[key], int) and node[key] >= 0, key
    assert node["fd_used"] <= node["fd_total"]
    assert isinstance(node["mem_alarm"], bool) and isinstance(node["disk_free_alarm"], bool)
    status, one = mgmt.get(f"/api/nodes/{q(node['name'])}")
    assert status == 200 and one["name"] == node["name"]
    mg = user_factory(tags="management")
    result = mgmt.as_user(mg.name, mg.password).get("/api/nodes")
    assert (result.status, result.body) == (401, NOT_MONITOR)
    mon = user_factory(tags="monitoring")
    status, nodes = mgmt.as_user(mon.name, mon.password).get("/api/nodes")
    assert status == 200 and nodes[0]["name"] == node["name"]
