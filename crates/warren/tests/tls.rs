//! AMQPS with lapin (rustls): a broker started with `--amqps-port`,
//! `--tls-cert` and `--tls-key` on certificates `openssl` makes here, a
//! publish and a get over TLS, a client that trusts another CA refused,
//! and the plain listener serving beside it.

mod common;

use std::path::Path;
use std::process::Command;

use common::process::{free_port, temp_dir, Broker};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate it signed for 127.0.0.1, and another CA.
fn make_certs(dir: &Path) {
    for ca in ["ca", "other"] {
        let (key, pem, subj) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN={ca}"),
        );
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", &key,
                "-out", &pem, "-subj", &subj,
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn trusting(dir: &Path, ca: &str) -> OwnedTLSConfig {
    OwnedTLSConfig {
        identity: None,
        cert_chain: Some(std::fs::read_to_string(dir.join(ca)).unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_publishes_and_gets_over_tls() {
    let dir = temp_dir("tls");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let tls_port = free_port();
    let cert = certs.join("server.pem");
    let key = certs.join("server.key");
    let b = Broker::start_with(
        &dir.join("data"),
        &[
            "--amqps-port",
            &tls_port.to_string(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let uri = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");
    let conn = common::within(Connection::connect_with_config(
        &uri,
        ConnectionProperties::default(),
        trusting(&certs, "ca.pem"),
    ))
    .await
    .expect("connect over TLS");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "tls-q",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "",
        "tls-q",
        BasicPublishOptions::default(),
        b"over tls",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = loop {
        if let Some(m) = ch
            .basic_get("tls-q", BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(got.delivery.data, b"over tls");

    // A client trusting another CA does not get in; the TLS connection
    // above and the plain listener are not affected.
    let refused = common::within(Connection::connect_with_config(
        &uri,
        ConnectionProperties::default(),
        trusting(&certs, "other.pem"),
    ))
    .await;
    assert!(refused.is_err(), "connected with the wrong CA");
    let plain = Connection::connect(&b.uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let pch = plain.create_channel().await.unwrap();
    let q = pch
        .queue_declare(
            "tls-q",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    ch.close(200, "bye").await.unwrap();
    conn.close(200, "bye").await.unwrap();
    plain.close(200, "bye").await.unwrap();
    b.stop();
}
