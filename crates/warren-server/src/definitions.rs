//! Durable definitions: the vhosts, users, permissions, exchanges, queues and
//! bindings that survive a restart, as serde types. `persist` stores them one
//! record per object; `definitions.json`, the single file that older data
//! directories kept, is still read once and carried over.
//!
//! What is durable follows RabbitMQ: durable exchanges (not the predeclared
//! ones), durable queues that are not exclusive, and bindings whose source
//! and destination are both durable. Arguments are stored as the hex of
//! their AMQP field-table encoding, so every value type round-trips exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use warren_core::access::{
    AccessControl, AccessError, PasswordHash, Permissions, TopicPermission, User, VhostInfo,
    VhostLimits,
};
use warren_core::policy::{
    Policy, PolicyError, PolicyKind, PolicyRegistry, PolicyRequest, Priority,
};
use warren_protocol::{FieldTable, FieldValue, Reader};

/// Everything durable, across virtual hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// The next id for a durable queue's storage directory.
    pub next_queue_id: u64,
    pub vhosts: BTreeMap<String, VHostDefinitions>,
    /// Vhosts, users and permissions; absent in a data directory written
    /// before Warren had them, which then starts with the default user.
    #[serde(default)]
    pub tenants: Option<TenantDefinitions>,
}

/// The access-control registry, in the shape of RabbitMQ's definitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantDefinitions {
    pub vhosts: Vec<VhostDef>,
    pub users: Vec<UserDef>,
    pub permissions: Vec<PermissionDef>,
    pub topic_permissions: Vec<TopicPermissionDef>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    #[serde(default)]
    pub operator_policies: Vec<PolicyDef>,
}

/// A policy or operator policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    pub apply_to: String,
    /// A JSON number, as given.
    pub priority: serde_json::Value,
    pub definition: Table,
}

fn text(s: &str) -> FieldValue {
    FieldValue::LongString(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

impl PolicyDef {
    pub fn from_policy(p: &Policy) -> Self {
        PolicyDef {
            vhost: p.vhost.clone(),
            name: p.name.clone(),
            pattern: p.pattern.clone(),
            apply_to: p.apply_to.as_str().to_string(),
            priority: match p.priority {
                Priority::Integer(n) => n.into(),
                Priority::Float(f) => f.into(),
            },
            definition: Table(
                p.definition
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }
    }

    /// The policy again, validated as a new one is.
    pub fn to_policy(&self, kind: PolicyKind) -> Result<Policy, PolicyError> {
        Policy::validate(
            kind,
            &self.vhost,
            &self.name,
            PolicyRequest {
                pattern: Some(text(&self.pattern)),
                apply_to: Some(text(&self.apply_to)),
                priority: Some(match self.priority.as_i64() {
                    Some(n) => FieldValue::I64(n),
                    None => FieldValue::F64(self.priority.as_f64().unwrap_or(0.0)),
                }),
                definition: Some(FieldValue::Table(self.definition.0.clone())),
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VhostDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub default_queue_type: Option<String>,
    #[serde(default)]
    pub max_connections: Option<i64>,
    #[serde(default)]
    pub max_queues: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    /// Base64 of salt and hash, as RabbitMQ exports it.
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

impl TenantDefinitions {
    /// Everything in the registry (the loopback users are configuration,
    /// not definitions).
    pub fn from_access(ac: &AccessControl) -> Self {
        TenantDefinitions {
            vhosts: ac
                .vhosts()
                .map(|v| VhostDef {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    tags: v.tags.clone(),
                    default_queue_type: v.default_queue_type.clone(),
                    max_connections: v.limits.max_connections,
                    max_queues: v.limits.max_queues,
                })
                .collect(),
            users: ac
                .users()
                .map(|u| UserDef {
                    name: u.name.clone(),
                    password_hash: u.password.to_base64(),
                    hashing_algorithm: u.password.algorithm.as_str().to_string(),
                    tags: u.tags.clone(),
                })
                .collect(),
            permissions: ac
                .all_permissions()
                .map(|(user, vhost, p)| PermissionDef {
                    user: user.to_string(),
                    vhost: vhost.to_string(),
                    configure: p.configure.as_str().to_string(),
                    write: p.write.as_str().to_string(),
                    read: p.read.as_str().to_string(),
                })
                .collect(),
            topic_permissions: ac
                .all_topic_permissions()
                .map(|(user, vhost, t)| TopicPermissionDef {
                    user: user.to_string(),
                    vhost: vhost.to_string(),
                    exchange: t.exchange.clone(),
                    write: t.write.clone(),
                    read: t.read.clone(),
                })
                .collect(),
            policies: Vec::new(),
            operator_policies: Vec::new(),
        }
    }

    /// Adds the policies of a policy registry.
    pub fn with_policies(mut self, reg: &PolicyRegistry) -> Self {
        for (kind, out) in [
            (PolicyKind::User, &mut self.policies),
            (PolicyKind::Operator, &mut self.operator_policies),
        ] {
            out.extend(reg.list(kind).iter().map(|p| PolicyDef::from_policy(p)));
        }
        self
    }

    /// Adds these definitions' policies to a registry; those that no
    /// longer validate are skipped and reported.
    pub fn apply_policies(&self, reg: &mut PolicyRegistry) -> Vec<String> {
        let mut skipped = Vec::new();
        for (kind, list) in [
            (PolicyKind::User, &self.policies),
            (PolicyKind::Operator, &self.operator_policies),
        ] {
            for d in list {
                match d.to_policy(kind) {
                    Ok(p) => {
                        reg.vhost_mut(&d.vhost).put(kind, p);
                    }
                    Err(e) => skipped.push(format!("policy '{}' in '{}': {e}", d.name, d.vhost)),
                }
            }
        }
        skipped
    }

    /// Adds these definitions to a registry; entries that do not parse
    /// (a bad hash, a pattern, a missing user) are skipped and reported.
    pub fn apply_to(&self, ac: &mut AccessControl) -> Vec<String> {
        let mut skipped = Vec::new();
        for v in &self.vhosts {
            ac.put_vhost(VhostInfo {
                name: v.name.clone(),
                description: v.description.clone(),
                tags: v.tags.clone(),
                default_queue_type: v.default_queue_type.clone(),
                limits: VhostLimits {
                    max_connections: v.max_connections,
                    max_queues: v.max_queues,
                },
            });
        }
        for u in &self.users {
            match PasswordHash::from_base64(&u.password_hash, Some(&u.hashing_algorithm)) {
                Ok(password) => {
                    ac.put_user(User {
                        name: u.name.clone(),
                        password,
                        tags: u.tags.clone(),
                    });
                }
                Err(e) => skipped.push(format!("user '{}': {e}", u.name)),
            }
        }
        for p in &self.permissions {
            let result = Permissions::new(&p.configure, &p.write, &p.read)
                .map_err(AccessError::from)
                .and_then(|perms| ac.set_permissions(&p.user, &p.vhost, perms));
            if let Err(e) = result {
                skipped.push(format!("permissions of '{}' in '{}': {e}", p.user, p.vhost));
            }
        }
        for t in &self.topic_permissions {
            let tp = TopicPermission {
                exchange: t.exchange.clone(),
                write: t.write.clone(),
                read: t.read.clone(),
            };
            if let Err(e) = ac.set_topic_permission(&t.user, &t.vhost, tp) {
                skipped.push(format!(
                    "topic permissions of '{}' in '{}': {e}",
                    t.user, t.vhost
                ));
            }
        }
        skipped
    }
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
    /// Who declared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
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

    /// Removes the file (its definitions are in the store now).
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
                    created_by: None,
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
        std::fs::write(
            dir.join("definitions.json"),
            serde_json::to_vec(&defs).unwrap(),
        )
        .unwrap();
        assert_eq!(file.load().unwrap(), defs);
        file.remove().unwrap();
        assert_eq!(file.load().unwrap(), Definitions::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
