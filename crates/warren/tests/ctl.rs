//! `warren ctl` against a running broker: the rabbitmqctl verbs, their
//! output, and that what they change takes effect over AMQP.

mod common;

use std::process::Command;

use common::process::{temp_dir, Broker};
use lapin::{Connection, ConnectionProperties};

fn ctl(port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("ctl")
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(args)
        .output()
        .expect("run warren ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_verbs_manage_the_running_broker() {
    let dir = temp_dir("ctl");
    let (b, mgmt) = Broker::start_with_management(&dir);
    let ok = |args: &[&str]| {
        let (ok, out, err) = ctl(mgmt, args);
        assert!(ok, "warren ctl {args:?}: {err}");
        out
    };
    assert_eq!(ok(&["add_vhost", "prod"]), "Adding vhost \"prod\" ...\n");
    ok(&["add_user", "app", "pw1"]);
    ok(&[
        "set_permissions",
        "-p",
        "prod",
        "app",
        "^app\\.",
        ".*",
        ".*",
    ]);
    ok(&["set_user_tags", "app", "monitoring"]);
    assert_eq!(
        ok(&["-q", "list_users"]),
        "name\ttags\napp\t[monitoring]\nguest\t[administrator]\n"
    );
    assert_eq!(ok(&["-q", "list_vhosts"]), "name\n/\nprod\n");
    assert_eq!(
        ok(&["-q", "list_permissions", "-p", "prod"]),
        "user\tconfigure\twrite\tread\napp\t^app\\.\t.*\t.*\nguest\t.*\t.*\t.*\n"
    );
    // The password works over AMQP; after a change only the new one does.
    let uri = |pw: &str| {
        b.uri()
            .replace("guest:guest@", &format!("app:{pw}@"))
            .replace("/%2f", "/prod")
    };
    let conn = Connection::connect(&uri("pw1"), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("app.jobs", Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        ok(&[
            "-q",
            "list_queues",
            "-p",
            "prod",
            "name",
            "messages",
            "durable"
        ]),
        "name\tmessages\tdurable\napp.jobs\t0\tfalse\n"
    );
    // A policy applies to the queue at once; clearing it lifts it.
    assert_eq!(
        ok(&[
            "set_policy",
            "-p",
            "prod",
            "--priority",
            "2",
            "--apply-to",
            "queues",
            "cap",
            "^app\\.",
            "{\"max-length\":1}"
        ]),
        "Setting policy \"cap\" for pattern \"^app\\.\" to \"{\"max-length\":1}\" with priority \"2\" for vhost \"prod\" ...\n"
    );
    ok(&[
        "set_operator_policy",
        "-p",
        "prod",
        "ttl",
        ".*",
        "{\"message-ttl\":60000}",
    ]);
    assert_eq!(
        ok(&["-q", "list_policies", "-p", "prod"]),
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\nprod\tcap\t^app\\.\tqueues\t{\"max-length\":1}\t2\n"
    );
    assert!(ok(&["-q", "list_operator_policies", "-p", "prod"]).contains("ttl\t.*\tall"));
    for body in [&b"1"[..], b"2"] {
        ch.basic_publish("", "app.jobs", Default::default(), body, Default::default())
            .await
            .unwrap();
    }
    let count = |ch: lapin::Channel| async move {
        let opts = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        ch.queue_declare("app.jobs", opts, Default::default())
            .await
            .unwrap()
            .message_count()
    };
    assert_eq!(count(ch.clone()).await, 1);
    ok(&["clear_policy", "-p", "prod", "cap"]);
    ok(&["clear_operator_policy", "-p", "prod", "ttl"]);
    assert_eq!(
        ok(&["-q", "list_policies", "-p", "prod"]),
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n"
    );
    ch.basic_publish("", "app.jobs", Default::default(), b"3", Default::default())
        .await
        .unwrap();
    assert_eq!(count(ch.clone()).await, 2);
    ok(&["change_password", "app", "pw2"]);
    assert!(
        Connection::connect(&uri("pw1"), ConnectionProperties::default())
            .await
            .is_err()
    );
    Connection::connect(&uri("pw2"), ConnectionProperties::default())
        .await
        .unwrap();
    // The tags survived the password change.
    assert!(ok(&["-q", "list_users"]).contains("app\t[monitoring]"));
    let defs: serde_json::Value = serde_json::from_str(&ok(&["export_definitions", "-"])).unwrap();
    assert!(defs["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "app.jobs"));
    assert!(ok(&["status"]).contains("queues: 1"));
    ok(&["delete_user", "app"]);
    let (ok_, _, err) = ctl(mgmt, &["delete_user", "app"]);
    assert!(!ok_ && err.contains("404"), "{err}");
    let (ok_, _, err) = ctl(mgmt, &["--password", "wrong", "list_users"]);
    assert!(!ok_ && err.contains("401"), "{err}");
    drop(conn);
    b.stop();
}
