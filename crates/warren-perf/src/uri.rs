//! Parsing of `amqp://` URIs as RabbitMQ's clients accept them.

use crate::PerfError;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl AmqpUri {
    /// Parses `amqp://user:password@host:port/vhost`. Every part but the
    /// scheme is optional (guest, guest, localhost, 5672, `/`); user,
    /// password and vhost are percent-decoded; a query string is ignored.
    pub fn parse(uri: &str) -> Result<AmqpUri, PerfError> {
        let rest = if let Some(rest) = uri.strip_prefix("amqp://") {
            rest
        } else if uri.starts_with("amqps://") {
            return Err(PerfError::Uri("amqps (TLS) is not supported".into()));
        } else {
            return Err(PerfError::Uri(format!(
                "{uri:?} does not start with amqp://"
            )));
        };
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => ("guest".to_string(), "guest".to_string()),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (decode(u)?, decode(p)?),
                None => (decode(info)?, String::new()),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        let vhost = if path.is_empty() {
            "/".to_string()
        } else {
            decode(path)?
        };
        Ok(AmqpUri {
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            password,
            vhost,
        })
    }

    /// `host:port`, as given to the resolver and shown in messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URI without the password, for reports.
    pub fn redacted(&self) -> String {
        format!(
            "amqp://{}@{}/{}",
            self.user,
            self.addr(),
            encode_vhost(&self.vhost)
        )
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), PerfError> {
    let bad_port = |p: &str| PerfError::Uri(format!("bad port {p:?}"));
    if let Some(rest) = hostport.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(PerfError::Uri("unclosed [ in host".into()));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None if after.is_empty() => 5672,
            None => return Err(PerfError::Uri(format!("unexpected {after:?} after host"))),
        };
        return Ok((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, p)) => Ok((decode(host)?, p.parse().map_err(|_| bad_port(p))?)),
        None => Ok((decode(hostport)?, 5672)),
    }
}

fn decode(s: &str) -> Result<String, PerfError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| PerfError::Uri(format!("bad percent-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PerfError::Uri(format!("{s:?} is not UTF-8")))
}

fn encode_vhost(vhost: &str) -> String {
    let mut out = String::new();
    for b in vhost.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uri() {
        let u = AmqpUri::parse("amqp://bob:s%40cret@example.org:5673/%2fprod").expect("parse");
        assert_eq!(
            u,
            AmqpUri {
                host: "example.org".into(),
                port: 5673,
                user: "bob".into(),
                password: "s@cret".into(),
                vhost: "/prod".into(),
            }
        );
        assert_eq!(u.redacted(), "amqp://bob@example.org:5673/%2fprod");
    }

    #[test]
    fn defaults_and_ipv6() {
        let u = AmqpUri::parse("amqp://").expect("parse");
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_str(), u.vhost.as_str()),
            ("localhost", 5672, "guest", "/")
        );
        let u = AmqpUri::parse("amqp://[::1]:5999/v?heartbeat=5").expect("parse");
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("::1", 5999, "v")
        );
        assert_eq!(u.addr(), "[::1]:5999");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        assert!(AmqpUri::parse("amqps://h").is_err());
        assert!(AmqpUri::parse("http://h").is_err());
        assert!(AmqpUri::parse("amqp://h:port").is_err());
        assert!(AmqpUri::parse("amqp://h/%zz").is_err());
    }
}
