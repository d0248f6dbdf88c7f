//! Black-box tests with the amqprs client: the same server, a second
//! independent client implementation.

mod common;

use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicPublishArguments,
    BasicQosArguments, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
    QueueDeleteArguments, QueuePurgeArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::BasicProperties;
use common::{within, TestServer};

async fn open(server: &TestServer) -> Connection {
    let args = OpenConnectionArguments::new(
        &server.addr.ip().to_string(),
        server.addr.port(),
        "guest",
        "guest",
    );
    Connection::open(&args).await.expect("open")
}

#[tokio::test]
async fn publish_get_consume_and_ack() {
    let server = TestServer::start().await;
    let conn = open(&server).await;
    let ch = conn.open_channel(None).await.unwrap();
    let (name, messages, consumers) = ch
        .queue_declare(QueueDeclareArguments::new("amqprs"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((name.as_str(), messages, consumers), ("amqprs", 0, 0));

    let mut props = BasicProperties::default();
    props.with_content_type("text/plain").with_delivery_mode(2);
    for i in 0..3u8 {
        ch.basic_publish(
            props.clone(),
            vec![i; 10],
            BasicPublishArguments::new("", "amqprs"),
        )
        .await
        .unwrap();
    }
    let (get_ok, got_props, body) = within(ch.basic_get(BasicGetArguments::new("amqprs")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, vec![0u8; 10]);
    assert_eq!(get_ok.message_count(), 2);
    assert_eq!(
        got_props.content_type().map(|s| s.as_str()),
        Some("text/plain")
    );
    ch.basic_ack(BasicAckArguments::new(get_ok.delivery_tag(), false))
        .await
        .unwrap();

    ch.basic_qos(BasicQosArguments::new(0, 10, false))
        .await
        .unwrap();
    let (_tag, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new("amqprs", "t"))
        .await
        .unwrap();
    for i in 1..3u8 {
        let msg = within(rx.recv()).await.unwrap();
        assert_eq!(msg.content.unwrap(), vec![i; 10]);
        let tag = msg.deliver.unwrap().delivery_tag();
        ch.basic_ack(BasicAckArguments::new(tag, false))
            .await
            .unwrap();
    }
    ch.close().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn topic_routing_purge_and_delete() {
    let server = TestServer::start().await;
    let conn = open(&server).await;
    let ch = conn.open_channel(None).await.unwrap();
    ch.exchange_declare(ExchangeDeclareArguments::new("logs", "topic"))
        .await
        .unwrap();
    ch.queue_declare(QueueDeclareArguments::new("errors"))
        .await
        .unwrap();
    ch.queue_bind(QueueBindArguments::new("errors", "logs", "*.error"))
        .await
        .unwrap();
    for key in ["app.error", "app.info", "db.error", "db.error.deep"] {
        ch.basic_publish(
            BasicProperties::default(),
            key.as_bytes().to_vec(),
            BasicPublishArguments::new("logs", key),
        )
        .await
        .unwrap();
    }
    let (first, _, body) = within(ch.basic_get(BasicGetArguments::new("errors")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, b"app.error");
    assert_eq!(first.message_count(), 1);
    let purged = ch
        .queue_purge(QueuePurgeArguments::new("errors"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purged, 1);
    let deleted = ch
        .queue_delete(QueueDeleteArguments::new("errors"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted, 0);
    conn.close().await.unwrap();
}
