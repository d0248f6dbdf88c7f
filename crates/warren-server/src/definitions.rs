//! Durable definitions: the exchanges, queues and bindings that survive a
//! restart, saved as one JSON document replaced atomically on every change.
//!
//! What is durable follows RabbitMQ: durable exchanges (not the predeclared
//! ones), durable queues that are not exclusive, and bindings whose source
//! and destination are both durable. Arguments are stored as the hex of
//! their AMQP field-table encoding, so every value type round-trips exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use warren_protocol::{FieldTable, Reader};

/// Everything durable, across virtual hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// The next id for a durable queue's storage directory.
    pub next_queue_id: u64,
    pub vhosts: BTreeMap<String, VHostDefinitions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VHostDefinitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Table,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    /// Names the queue's storage directory.
    pub id: u64,
    pub auto_delete: bool,
    pub arguments: Table,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub destination: String,
    pub destination_is_queue: bool,
    pub routing_key: String,
    pub arguments: Table,
}

/// A field table stored as the hex of its wire encoding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table(pub FieldTable);

impl Serialize for Table {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = BytesMut::new();
        self.0.encode(&mut buf);
        s.serialize_str(&hex::encode(&buf))
    }
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        Reader::new(&bytes)
            .table()
            .map(Table)
            .map_err(serde::de::Error::custom)
    }
}

/// The definitions file of a data directory.
pub struct DefinitionsFile {
    path: PathBuf,
}

impl DefinitionsFile {
    pub fn new(data_dir: &Path) -> Self {
        DefinitionsFile {
            path: data_dir.join("definitions.json"),
        }
    }

    /// Reads the saved definitions; none saved yet is an empty set.
    pub fn load(&self) -> std::io::Result<Definitions> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Definitions::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the saved definitions atomically: write a temporary file,
    /// sync it, rename it over the old one, sync the directory.
    pub fn save(&self, defs: &Definitions) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(defs)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_protocol::FieldValue;

    #[test]
    fn round_trips_through_json_and_disk() {
        let dir = std::env::temp_dir().join(format!("warren-defs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = DefinitionsFile::new(&dir);
        assert_eq!(file.load().unwrap(), Definitions::default());
        let mut args = FieldTable::new();
        args.insert("x-message-ttl", FieldValue::I32(1000));
        args.insert(
            "x-dead-letter-exchange",
            FieldValue::LongString(Bytes::from_static(b"dlx")),
        );
        let mut defs = Definitions {
            next_queue_id: 3,
            ..Default::default()
        };
        defs.vhosts.insert(
            "/".into(),
            VHostDefinitions {
                exchanges: vec![ExchangeDef {
                    name: "logs".into(),
                    kind: "topic".into(),
                    auto_delete: false,
                    internal: false,
                    arguments: Table::default(),
                }],
                queues: vec![QueueDef {
                    name: "q".into(),
                    id: 2,
                    auto_delete: false,
                    arguments: Table(args),
                }],
                bindings: vec![BindingDef {
                    source: "logs".into(),
                    destination: "q".into(),
                    destination_is_queue: true,
                    routing_key: "a.#".into(),
                    arguments: Table::default(),
                }],
            },
        );
        file.save(&defs).unwrap();
        assert_eq!(file.load().unwrap(), defs);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
