//! Tenants and access control: virtual hosts, users, their permissions, and
//! the checks every connection and operation passes.
//!
//! [`AccessControl`] is the registry, a plain value: the server keeps it
//! behind a lock, persists its changes and hands each connection the
//! [`Grants`] of its user in its vhost, which the channel consults on every
//! operation (see [`permissions`] for RabbitMQ's access-control table).
//! Passwords are salted hashes in RabbitMQ's formats ([`password`]).

pub mod password;
pub mod permissions;
pub mod user;

use std::collections::BTreeMap;

pub use password::{HashError, HashingAlgorithm, PasswordHash, SALT_LEN};
pub use permissions::{
    CheckCache, Grants, Operation, Pattern, PatternError, Permission, Permissions, Requirement,
    ResourceKind, TopicPermission,
};
pub use user::{ManagementLevel, User, ADMINISTRATOR, MANAGEMENT, MONITORING, POLICYMAKER};

use crate::AmqpError;

/// A virtual host's own settings (its topology lives elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VhostInfo {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    pub limits: VhostLimits,
}

impl VhostInfo {
    pub fn new(name: impl Into<String>) -> Self {
        VhostInfo {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// RabbitMQ's per-vhost limits, as set (a negative value is kept, and
/// means no limit, as in RabbitMQ); `None` is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VhostLimits {
    pub max_connections: Option<i64>,
    pub max_queues: Option<i64>,
}

impl VhostLimits {
    /// The connection limit in force.
    pub fn connections(&self) -> Option<u64> {
        self.max_connections.and_then(|n| u64::try_from(n).ok())
    }

    /// The queue limit in force.
    pub fn queues(&self) -> Option<u64> {
        self.max_queues.and_then(|n| u64::try_from(n).ok())
    }
}

/// Why a change to the registry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("no such user '{0}'")]
    NoSuchUser(String),
    #[error("no such vhost '{0}'")]
    NoSuchVhost(String),
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// Why a login was refused (told to the client only as a generic
/// refusal; the reason goes to the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    NoSuchUser,
    WrongPassword,
    /// A loopback-only user connecting from elsewhere.
    NotFromLoopback,
}

/// Every vhost, user and permission.
#[derive(Debug, Clone, Default)]
pub struct AccessControl {
    vhosts: BTreeMap<String, VhostInfo>,
    users: BTreeMap<String, User>,
    /// (user, vhost) -> permissions.
    permissions: BTreeMap<(String, String), Permissions>,
    /// (user, vhost) -> per-exchange topic permissions.
    topic_permissions: BTreeMap<(String, String), Vec<TopicPermission>>,
    /// Users that may log in only from a loopback address.
    loopback_users: Vec<String>,
}

impl AccessControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the users that may log in only from loopback (RabbitMQ's
    /// `loopback_users`, by default `guest`).
    pub fn set_loopback_users(&mut self, users: Vec<String>) {
        self.loopback_users = users;
    }

    pub fn loopback_users(&self) -> &[String] {
        &self.loopback_users
    }

    // --- vhosts ---

    /// Adds or updates a vhost; true if it is new.
    pub fn put_vhost(&mut self, info: VhostInfo) -> bool {
        self.vhosts.insert(info.name.clone(), info).is_none()
    }

    /// Removes a vhost and every permission in it.
    pub fn delete_vhost(&mut self, name: &str) -> Option<VhostInfo> {
        let info = self.vhosts.remove(name)?;
        self.permissions.retain(|(_, v), _| v != name);
        self.topic_permissions.retain(|(_, v), _| v != name);
        Some(info)
    }

    pub fn vhost(&self, name: &str) -> Option<&VhostInfo> {
        self.vhosts.get(name)
    }

    pub fn vhost_mut(&mut self, name: &str) -> Option<&mut VhostInfo> {
        self.vhosts.get_mut(name)
    }

    pub fn vhosts(&self) -> impl Iterator<Item = &VhostInfo> {
        self.vhosts.values()
    }

    // --- users ---

    /// Adds or replaces a user; true if it is new.
    pub fn put_user(&mut self, user: User) -> bool {
        self.users.insert(user.name.clone(), user).is_none()
    }

    /// Removes a user and all its permissions.
    pub fn delete_user(&mut self, name: &str) -> Option<User> {
        let user = self.users.remove(name)?;
        self.permissions.retain(|(u, _), _| u != name);
        self.topic_permissions.retain(|(u, _), _| u != name);
        Some(user)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Checks a login by password. `from_loopback` says whether the peer's
    /// address is a loopback one.
    pub fn authenticate(
        &self,
        name: &str,
        password: &str,
        from_loopback: bool,
    ) -> Result<&User, LoginRefused> {
        let user = self.users.get(name).ok_or(LoginRefused::NoSuchUser)?;
        if !user.password.verify(password) {
            return Err(LoginRefused::WrongPassword);
        }
        if !from_loopback && self.loopback_users.iter().any(|u| u == name) {
            return Err(LoginRefused::NotFromLoopback);
        }
        Ok(user)
    }

    // --- permissions ---

    pub fn set_permissions(
        &mut self,
        user: &str,
        vhost: &str,
        permissions: Permissions,
    ) -> Result<(), AccessError> {
        self.require(user, vhost)?;
        self.permissions
            .insert((user.to_string(), vhost.to_string()), permissions);
        Ok(())
    }

    /// Removes a user's permissions in a vhost; true if it had some.
    pub fn clear_permissions(&mut self, user: &str, vhost: &str) -> bool {
        self.permissions
            .remove(&(user.to_string(), vhost.to_string()))
            .is_some()
    }

    pub fn permissions(&self, user: &str, vhost: &str) -> Option<&Permissions> {
        self.permissions.get(&(user.to_string(), vhost.to_string()))
    }

    /// Every (user, vhost, permissions), by user then vhost.
    pub fn all_permissions(&self) -> impl Iterator<Item = (&str, &str, &Permissions)> {
        self.permissions
            .iter()
            .map(|((u, v), p)| (u.as_str(), v.as_str(), p))
    }

    /// Sets a user's topic permission on one exchange of a vhost.
    pub fn set_topic_permission(
        &mut self,
        user: &str,
        vhost: &str,
        permission: TopicPermission,
    ) -> Result<(), AccessError> {
        self.require(user, vhost)?;
        permission.validate()?;
        let list = self
            .topic_permissions
            .entry((user.to_string(), vhost.to_string()))
            .or_default();
        match list.iter_mut().find(|t| t.exchange == permission.exchange) {
            Some(t) => *t = permission,
            None => list.push(permission),
        }
        Ok(())
    }

    /// Removes a user's topic permissions in a vhost, on one exchange or
    /// on all; true if any were removed.
    pub fn clear_topic_permissions(
        &mut self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> bool {
        let key = (user.to_string(), vhost.to_string());
        let Some(list) = self.topic_permissions.get_mut(&key) else {
            return false;
        };
        let before = list.len();
        match exchange {
            Some(x) => list.retain(|t| t.exchange != x),
            None => list.clear(),
        }
        let removed = list.len() != before;
        if list.is_empty() {
            self.topic_permissions.remove(&key);
        }
        removed
    }

    pub fn topic_permissions(&self, user: &str, vhost: &str) -> &[TopicPermission] {
        self.topic_permissions
            .get(&(user.to_string(), vhost.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every (user, vhost, topic permission), by user then vhost.
    pub fn all_topic_permissions(&self) -> impl Iterator<Item = (&str, &str, &TopicPermission)> {
        self.topic_permissions
            .iter()
            .flat_map(|((u, v), list)| list.iter().map(move |t| (u.as_str(), v.as_str(), t)))
    }

    /// What `user` may do in `vhost`.
    pub fn grants(&self, user: &str, vhost: &str) -> Grants {
        Grants::new(
            user,
            vhost,
            self.permissions(user, vhost).cloned(),
            self.topic_permissions(user, vhost),
        )
    }

    /// `connection.open`: the vhost must exist and the user must have
    /// permissions in it (530 otherwise, with RabbitMQ's texts).
    pub fn open_vhost(&self, user: &str, vhost: &str) -> Result<Grants, AmqpError> {
        if !self.vhosts.contains_key(vhost) {
            return Err(AmqpError::not_allowed(format!("vhost {vhost} not found")));
        }
        if self.permissions(user, vhost).is_none() {
            return Err(AmqpError::not_allowed(format!(
                "access to vhost '{vhost}' refused for user '{user}'"
            )));
        }
        Ok(self.grants(user, vhost))
    }

    fn require(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        if !self.users.contains_key(user) {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        if !self.vhosts.contains_key(vhost) {
            return Err(AccessError::NoSuchVhost(vhost.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::ReplyCode;

    fn registry() -> AccessControl {
        let mut ac = AccessControl::new();
        ac.put_vhost(VhostInfo::new("/"));
        ac.put_vhost(VhostInfo::new("prod"));
        ac.put_user(User {
            name: "guest".into(),
            password: PasswordHash::new(HashingAlgorithm::Sha256, [9, 9, 9, 9], "guest"),
            tags: vec!["administrator".into()],
        });
        ac.set_loopback_users(vec!["guest".into()]);
        ac.set_permissions("guest", "/", Permissions::all())
            .unwrap();
        ac
    }

    #[test]
    fn logins_check_the_password_and_the_loopback_rule() {
        let ac = registry();
        assert!(ac.authenticate("guest", "guest", true).is_ok());
        assert_eq!(
            ac.authenticate("guest", "guest", false).unwrap_err(),
            LoginRefused::NotFromLoopback
        );
        assert_eq!(
            ac.authenticate("guest", "nope", true).unwrap_err(),
            LoginRefused::WrongPassword
        );
        assert_eq!(
            ac.authenticate("bob", "guest", true).unwrap_err(),
            LoginRefused::NoSuchUser
        );
    }

    #[test]
    fn opening_a_vhost_needs_it_to_exist_and_permissions_in_it() {
        let ac = registry();
        assert!(ac.open_vhost("guest", "/").is_ok());
        let err = ac.open_vhost("guest", "prod").unwrap_err();
        assert_eq!(err.code, ReplyCode::NotAllowed);
        assert_eq!(err.text, "access to vhost 'prod' refused for user 'guest'");
        let err = ac.open_vhost("guest", "nope").unwrap_err();
        assert_eq!(err.text, "vhost nope not found");
    }

    #[test]
    fn deleting_a_vhost_or_user_drops_their_permissions() {
        let mut ac = registry();
        ac.set_permissions("guest", "prod", Permissions::all())
            .unwrap();
        ac.set_topic_permission(
            "guest",
            "prod",
            TopicPermission {
                exchange: "amq.topic".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
        )
        .unwrap();
        ac.delete_vhost("prod");
        assert!(ac.permissions("guest", "prod").is_none());
        assert!(ac.topic_permissions("guest", "prod").is_empty());
        ac.put_vhost(VhostInfo::new("prod"));
        assert!(ac.open_vhost("guest", "prod").is_err());
        ac.delete_user("guest");
        assert_eq!(ac.all_permissions().count(), 0);
        assert_eq!(
            ac.set_permissions("guest", "/", Permissions::all()),
            Err(AccessError::NoSuchUser("guest".into()))
        );
        ac.put_user(User {
            name: "guest".into(),
            password: PasswordHash::none(),
            tags: vec![],
        });
        assert_eq!(
            ac.set_permissions("guest", "gone", Permissions::all()),
            Err(AccessError::NoSuchVhost("gone".into()))
        );
    }

    #[test]
    fn topic_permissions_replace_per_exchange_and_clear() {
        let mut ac = registry();
        let tp = |x: &str, w: &str| TopicPermission {
            exchange: x.into(),
            write: w.into(),
            read: ".*".into(),
        };
        ac.set_topic_permission("guest", "/", tp("a", "x")).unwrap();
        ac.set_topic_permission("guest", "/", tp("b", "y")).unwrap();
        ac.set_topic_permission("guest", "/", tp("a", "z")).unwrap();
        assert_eq!(ac.topic_permissions("guest", "/").len(), 2);
        assert_eq!(ac.topic_permissions("guest", "/")[0].write, "z");
        assert!(ac.set_topic_permission("guest", "/", tp("c", "(")).is_err());
        assert!(ac.clear_topic_permissions("guest", "/", Some("a")));
        assert!(!ac.clear_topic_permissions("guest", "/", Some("a")));
        assert!(ac.clear_topic_permissions("guest", "/", None));
        assert_eq!(ac.all_topic_permissions().count(), 0);
    }
}
