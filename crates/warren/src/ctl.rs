//! `warren ctl`: the common `rabbitmqctl` verbs, carried out through the
//! running broker's management API (so they work from any machine that can
//! reach it, with the API's authentication and permissions).
//!
//! Output follows rabbitmqctl's: an info line ("Listing users ..."), then a
//! header row and tab-separated rows; `--quiet` leaves out the info line.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args)]
pub struct CtlArgs {
    /// The management API's address.
    #[arg(long, default_value = "http://127.0.0.1:15672", env = "WARREN_CTL_URL")]
    url: String,
    /// The user to authenticate as.
    #[arg(long, default_value = "guest")]
    user: String,
    /// Its password.
    #[arg(long, default_value = "guest")]
    password: String,
    /// Leave out the informational lines.
    #[arg(short, long)]
    quiet: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
#[command(rename_all = "snake_case")]
enum Verb {
    /// Lists users and their tags.
    ListUsers,
    AddUser {
        name: String,
        password: String,
    },
    DeleteUser {
        name: String,
    },
    ChangePassword {
        name: String,
        password: String,
    },
    /// Replaces a user's tags.
    SetUserTags {
        name: String,
        tags: Vec<String>,
    },
    ListVhosts,
    AddVhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    SetPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    ClearPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        user: String,
    },
    ListPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Lists queues with the given columns (default: name messages).
    ListQueues {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        columns: Vec<String>,
    },
    ListExchanges {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        columns: Vec<String>,
    },
    ListBindings {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        columns: Vec<String>,
    },
    ListConnections {
        columns: Vec<String>,
    },
    ListConsumers {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Sets a policy: NAME applies DEFINITION (JSON) to the objects whose
    /// names match PATTERN.
    SetPolicy {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    ClearPolicy {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        name: String,
    },
    ListPolicies {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// Sets an operator policy (limits that users' policies cannot raise).
    SetOperatorPolicy {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    ClearOperatorPolicy {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        name: String,
    },
    ListOperatorPolicies {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// The broker's overview.
    Status,
    /// Writes the definitions (RabbitMQ's JSON) to FILE, or `-` for stdout.
    ExportDefinitions {
        file: String,
    },
    /// Imports definitions from FILE, or `-` for stdin.
    ImportDefinitions {
        file: String,
    },
}

#[derive(clap::Args)]
struct PolicyArgs {
    #[arg(short = 'p', long = "vhost", default_value = "/")]
    vhost: String,
    #[arg(long, default_value_t = 0)]
    priority: i64,
    #[arg(long = "apply-to", default_value = "all")]
    apply_to: String,
    name: String,
    pattern: String,
    /// The definition, a JSON object.
    definition: String,
}

/// What a kind of policy is called in messages.
fn policy_word(operator: bool) -> &'static str {
    if operator {
        "operator policy"
    } else {
        "policy"
    }
}

/// The API path of a kind of policy.
fn policy_path(operator: bool) -> &'static str {
    if operator {
        "operator-policies"
    } else {
        "policies"
    }
}

fn set_policy(
    api: &Api,
    p: &PolicyArgs,
    operator: bool,
) -> Result<(Option<String>, String), String> {
    let definition: Value = serde_json::from_str(&p.definition)
        .map_err(|e| format!("the definition is not JSON: {e}"))?;
    api.call(
        "PUT",
        &format!(
            "/api/{}/{}/{}",
            policy_path(operator),
            enc(&p.vhost),
            enc(&p.name)
        ),
        Some(json!({
            "pattern": p.pattern,
            "definition": definition,
            "priority": p.priority,
            "apply-to": p.apply_to,
        })),
    )?;
    let what = policy_word(operator);
    Ok((
        Some(format!(
            "Setting {what} \"{}\" for pattern \"{}\" to \"{}\" with priority \"{}\" for vhost \"{}\" ...",
            p.name, p.pattern, p.definition, p.priority, p.vhost
        )),
        String::new(),
    ))
}

fn clear_policy(
    api: &Api,
    vhost: &str,
    name: &str,
    operator: bool,
) -> Result<(Option<String>, String), String> {
    api.call(
        "DELETE",
        &format!(
            "/api/{}/{}/{}",
            policy_path(operator),
            enc(vhost),
            enc(name)
        ),
        None,
    )?;
    let what = policy_word(operator);
    Ok((
        Some(format!(
            "Clearing {what} \"{name}\" on vhost \"{vhost}\" ..."
        )),
        String::new(),
    ))
}

fn list_policies(
    api: &Api,
    vhost: &str,
    operator: bool,
) -> Result<(Option<String>, String), String> {
    let items = api.call(
        "GET",
        &format!("/api/{}/{}", policy_path(operator), enc(vhost)),
        None,
    )?;
    let what = if operator {
        "operator policies"
    } else {
        "policies"
    };
    Ok((
        Some(format!("Listing {what} for vhost \"{vhost}\" ...")),
        table(
            &items,
            &[
                "vhost",
                "name",
                "pattern",
                "apply-to",
                "definition",
                "priority",
            ],
        ),
    ))
}

struct Api {
    url: String,
    user: String,
    password: String,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = ureq::request(
            method,
            &format!("{}{}", self.url.trim_end_matches('/'), path),
        )
        .set(
            "Authorization",
            &format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{}:{}", self.user, self.password)
                )
            ),
        )
        .set("Content-Type", "application/json");
        let res = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let text = r.into_string().map_err(|e| e.to_string())?;
                if text.is_empty() {
                    Ok(Value::Null)
                } else {
                    serde_json::from_str(&text).map_err(|e| e.to_string())
                }
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_string))
                    .unwrap_or(text);
                Err(format!("{code}: {reason}"))
            }
            Err(e) => Err(format!("cannot reach {}: {e}", self.url)),
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn table(items: &Value, columns: &[&str]) -> String {
    let mut out = columns.join("\t");
    out.push('\n');
    for item in items.as_array().into_iter().flatten() {
        let row: Vec<String> = columns
            .iter()
            .map(|c| cell(c.split('.').fold(item, |v, k| &v[k])))
            .collect();
        out.push_str(&row.join("\t"));
        out.push('\n');
    }
    out
}

fn columns<'a>(given: &'a [String], default: &[&'a str]) -> Vec<&'a str> {
    if given.is_empty() {
        default.to_vec()
    } else {
        given.iter().map(String::as_str).collect()
    }
}

/// Runs one verb; the text to print, or the error.
fn run(args: &CtlArgs) -> Result<(Option<String>, String), String> {
    let api = Api {
        url: args.url.clone(),
        user: args.user.clone(),
        password: args.password.clone(),
    };
    let done = |info: String| Ok((Some(info), String::new()));
    match &args.verb {
        Verb::ListUsers => {
            let users = api.call("GET", "/api/users", None)?;
            Ok((
                Some("Listing users ...".into()),
                table(&users, &["name", "tags"]),
            ))
        }
        Verb::AddUser { name, password } => {
            api.call(
                "PUT",
                &format!("/api/users/{}", enc(name)),
                Some(json!({"password": password, "tags": ""})),
            )?;
            done(format!("Adding user \"{name}\" ..."))
        }
        Verb::DeleteUser { name } => {
            api.call("DELETE", &format!("/api/users/{}", enc(name)), None)?;
            done(format!("Deleting user \"{name}\" ..."))
        }
        Verb::ChangePassword { name, password } => {
            let path = format!("/api/users/{}", enc(name));
            let user = api.call("GET", &path, None)?;
            api.call(
                "PUT",
                &path,
                Some(json!({"password": password, "tags": user["tags"]})),
            )?;
            done(format!("Changing password for user \"{name}\" ..."))
        }
        Verb::SetUserTags { name, tags } => {
            let path = format!("/api/users/{}", enc(name));
            let user = api.call("GET", &path, None)?;
            api.call(
                "PUT",
                &path,
                Some(json!({
                    "password_hash": user["password_hash"],
                    "hashing_algorithm": user["hashing_algorithm"],
                    "tags": tags,
                })),
            )?;
            done(format!(
                "Setting tags for user \"{name}\" to [{}] ...",
                tags.join(", ")
            ))
        }
        Verb::ListVhosts => {
            let vhosts = api.call("GET", "/api/vhosts", None)?;
            Ok((Some("Listing vhosts ...".into()), table(&vhosts, &["name"])))
        }
        Verb::AddVhost { name } => {
            api.call(
                "PUT",
                &format!("/api/vhosts/{}", enc(name)),
                Some(json!({})),
            )?;
            done(format!("Adding vhost \"{name}\" ..."))
        }
        Verb::DeleteVhost { name } => {
            api.call("DELETE", &format!("/api/vhosts/{}", enc(name)), None)?;
            done(format!("Deleting vhost \"{name}\" ..."))
        }
        Verb::SetPermissions {
            vhost,
            user,
            configure,
            write,
            read,
        } => {
            api.call(
                "PUT",
                &format!("/api/permissions/{}/{}", enc(vhost), enc(user)),
                Some(json!({"configure": configure, "write": write, "read": read})),
            )?;
            done(format!(
                "Setting permissions for user \"{user}\" in vhost \"{vhost}\" ..."
            ))
        }
        Verb::ClearPermissions { vhost, user } => {
            api.call(
                "DELETE",
                &format!("/api/permissions/{}/{}", enc(vhost), enc(user)),
                None,
            )?;
            done(format!(
                "Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ..."
            ))
        }
        Verb::ListPermissions { vhost } => {
            let perms = api.call(
                "GET",
                &format!("/api/vhosts/{}/permissions", enc(vhost)),
                None,
            )?;
            Ok((
                Some(format!("Listing permissions for vhost \"{vhost}\" ...")),
                table(&perms, &["user", "configure", "write", "read"]),
            ))
        }
        Verb::ListQueues { vhost, columns: c } => {
            let items = api.call("GET", &format!("/api/queues/{}", enc(vhost)), None)?;
            Ok((
                Some(format!("Listing queues for vhost {vhost} ...")),
                table(&items, &columns(c, &["name", "messages"])),
            ))
        }
        Verb::ListExchanges { vhost, columns: c } => {
            let items = api.call("GET", &format!("/api/exchanges/{}", enc(vhost)), None)?;
            Ok((
                Some(format!("Listing exchanges for vhost {vhost} ...")),
                table(&items, &columns(c, &["name", "type"])),
            ))
        }
        Verb::ListBindings { vhost, columns: c } => {
            let items = api.call("GET", &format!("/api/bindings/{}", enc(vhost)), None)?;
            Ok((
                Some(format!("Listing bindings for vhost {vhost}...")),
                table(
                    &items,
                    &columns(
                        c,
                        &[
                            "source",
                            "destination_type",
                            "destination",
                            "routing_key",
                            "arguments",
                        ],
                    ),
                ),
            ))
        }
        Verb::ListConnections { columns: c } => {
            let items = api.call("GET", "/api/connections", None)?;
            Ok((
                Some("Listing connections ...".into()),
                table(
                    &items,
                    &columns(c, &["user", "peer_host", "peer_port", "state"]),
                ),
            ))
        }
        Verb::ListConsumers { vhost } => {
            let items = api.call("GET", &format!("/api/consumers/{}", enc(vhost)), None)?;
            Ok((
                Some(format!("Listing consumers in vhost {vhost} ...")),
                table(
                    &items,
                    &[
                        "queue.name",
                        "channel_details.name",
                        "consumer_tag",
                        "ack_required",
                        "prefetch_count",
                        "active",
                        "arguments",
                    ],
                ),
            ))
        }
        Verb::SetPolicy { policy } => set_policy(&api, policy, false),
        Verb::ClearPolicy { vhost, name } => clear_policy(&api, vhost, name, false),
        Verb::ListPolicies { vhost } => list_policies(&api, vhost, false),
        Verb::SetOperatorPolicy { policy } => set_policy(&api, policy, true),
        Verb::ClearOperatorPolicy { vhost, name } => clear_policy(&api, vhost, name, true),
        Verb::ListOperatorPolicies { vhost } => list_policies(&api, vhost, true),
        Verb::Status => {
            let o = api.call("GET", "/api/overview", None)?;
            let mut out = format!(
                "Node: {}\nVersion: {}\n",
                cell(&o["node"]),
                cell(&o["product_version"])
            );
            for k in [
                "connections",
                "channels",
                "queues",
                "consumers",
                "exchanges",
            ] {
                out.push_str(&format!("{k}: {}\n", cell(&o["object_totals"][k])));
            }
            for k in ["messages", "messages_ready", "messages_unacknowledged"] {
                out.push_str(&format!("{k}: {}\n", cell(&o["queue_totals"][k])));
            }
            Ok((Some("Status of node ...".into()), out))
        }
        Verb::ExportDefinitions { file } => {
            let defs = api.call("GET", "/api/definitions", None)?;
            let text = serde_json::to_string_pretty(&defs).map_err(|e| e.to_string())?;
            if file == "-" {
                return Ok((None, text + "\n"));
            }
            std::fs::write(file, text).map_err(|e| format!("{file}: {e}"))?;
            done(format!(
                "Exporting definitions in JSON to a file at \"{file}\" ..."
            ))
        }
        Verb::ImportDefinitions { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
            } else {
                std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?
            };
            let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
            api.call("POST", "/api/definitions", Some(doc))?;
            done(format!(
                "Importing definitions in JSON from a file at \"{file}\" ..."
            ))
        }
    }
}

pub fn main(args: CtlArgs) -> std::process::ExitCode {
    match run(&args) {
        Ok((info, out)) => {
            if let (Some(info), false) = (info, args.quiet) {
                println!("{info}");
            }
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("Error: {err}");
            std::process::ExitCode::from(70)
        }
    }
}
