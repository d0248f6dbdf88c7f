//! A user: name, password hash and tags.

use super::password::PasswordHash;

/// The tags that mean something to the broker (others are kept as given).
pub const ADMINISTRATOR: &str = "administrator";
pub const MONITORING: &str = "monitoring";
pub const POLICYMAKER: &str = "policymaker";
pub const MANAGEMENT: &str = "management";
pub const IMPERSONATOR: &str = "impersonator";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    pub tags: Vec<String>,
}

impl User {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Parses tags as RabbitMQ's API takes them: a comma-separated string
    /// (spaces around names ignored, empty names dropped).
    pub fn parse_tags(text: &str) -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// What the management API and UI let this user do.
    pub fn management_level(&self) -> ManagementLevel {
        if self.has_tag(ADMINISTRATOR) {
            ManagementLevel::Administrator
        } else if self.has_tag(MONITORING) {
            ManagementLevel::Monitoring
        } else if self.has_tag(POLICYMAKER) {
            ManagementLevel::Policymaker
        } else if self.has_tag(MANAGEMENT) {
            ManagementLevel::Management
        } else {
            ManagementLevel::None
        }
    }
}

/// RabbitMQ's management tags, each including the rights of those before
/// it: management < policymaker < monitoring < administrator (policymaker
/// and monitoring are side by side in RabbitMQ; each adds its own rights
/// to management's, and administrator has both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ManagementLevel {
    None,
    Management,
    Policymaker,
    Monitoring,
    Administrator,
}

impl ManagementLevel {
    /// May use the management API at all.
    pub fn can_manage(self) -> bool {
        self != ManagementLevel::None
    }
    /// May see every vhost, connection and channel (monitoring rights).
    pub fn can_monitor(self) -> bool {
        matches!(
            self,
            ManagementLevel::Monitoring | ManagementLevel::Administrator
        )
    }
    /// May set policies and parameters in its vhosts.
    pub fn can_set_policies(self) -> bool {
        matches!(
            self,
            ManagementLevel::Policymaker | ManagementLevel::Administrator
        )
    }
    pub fn is_administrator(self) -> bool {
        self == ManagementLevel::Administrator
    }
}
