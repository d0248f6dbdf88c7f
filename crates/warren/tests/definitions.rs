//! Durable definitions, black-box: declares, deletes and bindings by the
//! hundred survive `kill -9` exactly (the incremental store), and a data
//! directory written in the older single-file format is carried over.

mod common;

use std::collections::BTreeSet;

use common::process::{temp_dir, Broker};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

async fn connect(b: &Broker) -> (Connection, Channel) {
    let conn = Connection::connect(&b.uri(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Which of `names` exist, by passive declare.
async fn existing(conn: &Connection, names: impl Iterator<Item = String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in names {
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if ch
            .queue_declare(&name, passive, FieldTable::default())
            .await
            .is_ok()
        {
            out.insert(name);
            let _ = ch.close(200, "ok").await;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_declares_and_deletes_survive_sigkill_exactly() {
    let dir = temp_dir("defs-kill");
    let b = Broker::start(&dir);
    let (conn, ch) = connect(&b).await;
    ch.exchange_declare(
        "logs",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("q{i}")).collect();
    for n in &names {
        ch.queue_declare(n, durable(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind(n, "logs", n, Default::default(), FieldTable::default())
            .await
            .unwrap();
    }
    // Transient ones are never saved.
    ch.queue_declare("transient", Default::default(), FieldTable::default())
        .await
        .unwrap();
    for n in names.iter().step_by(3) {
        ch.queue_delete(n, Default::default()).await.unwrap();
    }
    ch.queue_unbind("q1", "logs", "q1", FieldTable::default())
        .await
        .unwrap();
    // A confirmed persistent message: its sync covers every definition
    // written before it.
    ch.confirm_select(Default::default()).await.unwrap();
    ch.basic_publish(
        "logs",
        "q2",
        Default::default(),
        b"hello",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    drop(conn);
    let dir = b.kill9();

    let b = Broker::start(&dir);
    let (conn, ch) = connect(&b).await;
    let want: BTreeSet<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, n)| n.clone())
        .collect();
    let all = names.iter().cloned().chain(["transient".to_string()]);
    assert_eq!(existing(&conn, all).await, want);
    // Bindings: q1's is gone, q2's is there (and carried the message).
    let got = ch
        .basic_get("q2", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the confirmed message");
    assert_eq!(got.delivery.data, b"hello");
    for (key, bound) in [("q1", false), ("q2", true), ("q4", true)] {
        ch.basic_publish("logs", key, Default::default(), b"x", Default::default())
            .await
            .unwrap();
        let got = ch
            .basic_get(key, BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        assert_eq!(got.is_some(), bound, "binding of {key}");
    }
    drop(conn);
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_single_file_format_is_carried_over() {
    let dir = temp_dir("defs-legacy");
    std::fs::create_dir_all(&dir).unwrap();
    // The format Warren wrote before the incremental store: arguments are
    // the hex of their field-table encoding (here x-max-length = 5 as
    // a signed 32-bit value: 'I').
    let args = "000000120c782d6d61782d6c656e6774684900000005";
    let json = format!(
        r#"{{"next_queue_id": 8,
            "vhosts": {{"/": {{
              "exchanges": [{{"name": "old-x", "kind": "fanout", "auto_delete": false,
                              "internal": false, "arguments": "00000000"}}],
              "queues": [{{"name": "old-q", "id": 7, "auto_delete": false, "arguments": "{args}"}}],
              "bindings": [{{"source": "old-x", "destination": "old-q", "destination_is_queue": true,
                             "routing_key": "", "arguments": "00000000"}}]
            }}}}}}"#
    );
    std::fs::write(dir.join("definitions.json"), json).unwrap();
    for round in 0..2 {
        let b = Broker::start(&dir);
        let (conn, ch) = connect(&b).await;
        let ok = ch
            .queue_declare(
                "old-q",
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(ok.message_count(), 0);
        ch.basic_publish("old-x", "", Default::default(), b"m", Default::default())
            .await
            .unwrap();
        let got = ch
            .basic_get("old-q", BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        assert!(got.is_some(), "round {round}: the binding was carried over");
        // The default user came with it (a first start for the tenants).
        drop(conn);
        let dir = b.stop();
        if round == 0 {
            assert!(dir.join("definitions").is_dir());
        } else {
            assert!(!dir.join("definitions.json").exists());
        }
    }
}

/// One HTTP/1.1 request as guest; the status code.
fn http(port: u16, method: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // guest:guest
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_permissions_answered_by_the_api_survive_sigkill() {
    let dir = temp_dir("defs-tenants");
    let (b, mgmt) = Broker::start_with_management(&dir);
    assert_eq!(http(mgmt, "PUT", "/api/vhosts/prod", ""), 201);
    assert_eq!(
        http(
            mgmt,
            "PUT",
            "/api/users/app",
            r#"{"password":"pw","tags":""}"#
        ),
        201
    );
    assert_eq!(
        http(
            mgmt,
            "PUT",
            "/api/permissions/prod/app",
            r#"{"configure":"^app","write":".*","read":".*"}"#
        ),
        201
    );
    assert_eq!(http(mgmt, "DELETE", "/api/users/guest", ""), 204);
    // Killed right after the answers: they were durable when given.
    let dir = b.kill9();
    let b = Broker::start(&dir);
    let uri = b.uri().replace("guest:guest@", "app:pw@");
    let uri = uri.replace("/%2f", "/prod");
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("app.q", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let err = ch
        .queue_declare("other", Default::default(), FieldTable::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");
    // guest stays deleted.
    assert!(
        Connection::connect(&b.uri(), ConnectionProperties::default())
            .await
            .is_err()
    );
    drop(conn);
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_definitions_imports_a_rabbitmq_export_at_start() {
    let dir = temp_dir("defs-load");
    std::fs::create_dir_all(&dir).unwrap();
    // As RabbitMQ 3.10 exports it: salt ++ sha256(salt ++ "s3cret"), base64.
    let salt = [1u8, 2, 3, 4];
    let hash = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(salt);
        h.update(b"s3cret");
        let mut all = salt.to_vec();
        all.extend(h.finalize());
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, all)
    };
    let file = dir.join("defs.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"rabbit_version": "3.10.8",
                "users": [{{"name": "app", "password_hash": "{hash}",
                            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "", "limits": {{}}}}],
                "vhosts": [{{"name": "prod", "metadata": {{}}}}],
                "permissions": [{{"user": "app", "vhost": "prod", "configure": ".*", "write": ".*", "read": ".*"}}],
                "topic_permissions": [], "parameters": [], "global_parameters": [], "policies": [],
                "queues": [{{"name": "jobs", "vhost": "prod", "durable": true, "auto_delete": false,
                             "arguments": {{"x-max-length": 3}}}}],
                "exchanges": [{{"name": "in", "vhost": "prod", "type": "fanout", "durable": true,
                                "auto_delete": false, "internal": false, "arguments": {{}}}}],
                "bindings": [{{"source": "in", "vhost": "prod", "destination": "jobs",
                               "destination_type": "queue", "routing_key": "", "arguments": {{}}}}]}}"#
        ),
    )
    .unwrap();
    let data = dir.join("data");
    let b = Broker::start_with(&data, &["--load-definitions", file.to_str().unwrap()]);
    let uri = b
        .uri()
        .replace("guest:guest@", "app:s3cret@")
        .replace("/%2f", "/prod");
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("the imported user logs in with its password");
    let ch = conn.create_channel().await.unwrap();
    for i in 0..5u8 {
        ch.basic_publish("in", "", Default::default(), &[i], Default::default())
            .await
            .unwrap();
    }
    // x-max-length 3 came with it (a JSON integer, equivalent to pika's int32).
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(3));
    let ok = ch.queue_declare("jobs", durable(), args).await.unwrap();
    assert_eq!(ok.message_count(), 3);
    drop(conn);
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_sets_the_first_start_user_and_vhost() {
    let dir = temp_dir("config-file");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("warren.toml");
    std::fs::write(
        &conf,
        "default_user = \"admin\"\ndefault_pass = \"pw\"\ndefault_vhost = \"apps\"\n\
         default_user_tags.administrator = true\nheartbeat = 7\n",
    )
    .unwrap();
    let b = Broker::start_with(&dir.join("data"), &["--config", conf.to_str().unwrap()]);
    let uri = b
        .uri()
        .replace("guest:guest@", "admin:pw@")
        .replace("/%2f", "/apps");
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("the configured user on the configured vhost");
    assert_eq!(conn.configuration().heartbeat(), 7);
    // guest was not created.
    assert!(
        Connection::connect(&b.uri(), ConnectionProperties::default())
            .await
            .is_err()
    );
    drop(conn);
    b.stop();
}
