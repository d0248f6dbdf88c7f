//! The broker: configuration, virtual hosts, storage, connection ids.
//! Shared by every connection task through an `Arc`.
//!
//! With a data directory, durable definitions are saved on every change and
//! restored by [`Broker::open`], and durable queues keep their messages in a
//! disk-first store whose syncs release publisher confirms.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;
use tracing::{info, warn};
use warren_core::access::{
    AccessControl, HashingAlgorithm, PasswordHash, Permissions, User, VhostInfo,
};
use warren_core::exchange::ExchangeSpec;
use warren_core::policy::PolicyRegistry;
use warren_core::{
    queue::QueueKind, Destination, ExchangeKind, MemoryStore, MessageStore, PriorityStore,
    QueueConfig, StoreError, SyncTicket, VirtualHost,
};
use warren_store::{
    Disk, DiskQueueStore, HandleCache, RealDisk, SpillLimits, SpillOpener, SpillStore,
    StoreOptions, SyncCoordinator,
};

use crate::channel::ReplyRegistry;
use crate::connections::ConnectionRegistry;
use crate::definitions::{Definitions, DefinitionsFile};
use crate::persist::DefinitionRecords;
use crate::queue::{Home, QueueCell, QueueSpec};
use crate::resources::{spawn_monitor, Alarms};
use crate::stats::{Churn, MessageStats, QueueGauges};
use crate::ServerConfig;

/// A virtual host's topology behind a read-write lock: publishes take it for
/// reading while they route; declarations, bindings and deletions take it
/// for writing.
pub type VHost = RwLock<VirtualHost<Arc<QueueCell>>>;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the saved definitions: {source}")]
    Definitions { source: StoreError },
    #[error("cannot recover queue '{queue}': {source}")]
    Queue { queue: String, source: StoreError },
}

/// The data directory's stores.
struct Storage {
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    sync: Arc<SyncCoordinator>,
    records: DefinitionRecords,
    next_queue_id: AtomicU64,
    /// Names the spill directories of transient queues.
    next_spill_id: Arc<AtomicU64>,
}

pub struct Broker {
    pub config: ServerConfig,
    /// Each vhost's topology. Looked up when a connection opens, never on
    /// the publish path.
    pub(crate) vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    /// Vhosts, users and permissions.
    pub(crate) access: RwLock<AccessControl>,
    /// Every vhost's policies and operator policies. Taken after `access`
    /// when both are.
    pub(crate) policies: RwLock<PolicyRegistry>,
    /// Bumped on every change to `access`, so connections know when to
    /// refresh the grants they check against.
    pub(crate) access_generation: AtomicU64,
    /// Open connections, for limits, listings and forced closes.
    pub connections: ConnectionRegistry,
    next_connection: AtomicU64,
    next_consumer: AtomicU64,
    /// Live direct reply-to consumers.
    pub replies: ReplyRegistry,
    storage: Option<Storage>,
    /// How far the message store has synced; confirms wait on it.
    synced: watch::Receiver<SyncTicket>,
    /// Keeps the channel open when there is no store to report syncs.
    _sync_source: watch::Sender<SyncTicket>,
    /// Raised memory and disk alarms.
    alarms: watch::Receiver<Alarms>,
    /// When the broker opened, for its uptime.
    pub started: std::time::Instant,
    /// Message counters, sampled once a second for rates.
    pub stats: MessageStats,
    /// Connections, channels and queues opened and closed.
    pub churn: Churn,
    /// Each vhost's queue totals.
    pub(crate) gauges: RwLock<HashMap<String, Arc<QueueGauges>>>,
    /// Each vhost's message counters: its connections' share of `stats`.
    pub(crate) vhost_stats: RwLock<HashMap<String, Arc<MessageStats>>>,
}

impl Broker {
    /// Opens the broker: with a data directory, restores durable exchanges,
    /// queues (with their messages) and bindings. Starts the resource
    /// monitor, so it must run inside a tokio runtime.
    pub fn open(config: ServerConfig) -> Result<Arc<Self>, StartError> {
        let (sync_source, mut synced) = watch::channel(0);
        let mut defs = Definitions::default();
        let mut vhosts: HashMap<String, Arc<VHost>> = HashMap::new();
        let storage = match &config.data_dir {
            None => None,
            Some(dir) => {
                let io = |source| StartError::DataDir {
                    dir: dir.clone(),
                    source,
                };
                std::fs::create_dir_all(dir.join("queues")).map_err(io)?;
                // Transient queues' spill files never outlive the process.
                match std::fs::remove_dir_all(dir.join("transient")) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
                let disk: Arc<dyn Disk> = Arc::new(HandleCache::new(
                    Arc::new(RealDisk::new()),
                    config.max_open_files,
                ));
                let sync = SyncCoordinator::start();
                synced = sync.subscribe();
                let (records, loaded) = DefinitionRecords::open(
                    Arc::clone(&disk),
                    dir.join("definitions"),
                    Arc::clone(&sync),
                )
                .map_err(|source| StartError::Definitions { source })?;
                // A data directory from before the incremental store: its
                // whole file goes over in one batch, and the file is removed
                // once the store holds something (so once that batch was
                // durable).
                let legacy = DefinitionsFile::new(dir);
                defs = if records.is_empty() {
                    let old = legacy.load().map_err(io)?;
                    records
                        .import(&old)
                        .map_err(|source| StartError::Definitions { source })?;
                    old
                } else {
                    legacy.remove().map_err(io)?;
                    loaded
                };
                let storage = Storage {
                    dir: dir.clone(),
                    disk,
                    sync,
                    records,
                    next_queue_id: AtomicU64::new(defs.next_queue_id.max(1)),
                    next_spill_id: Arc::new(AtomicU64::new(1)),
                };
                Some(storage)
            }
        };
        let access = tenants_of(&config, &defs);
        let mut policies = PolicyRegistry::default();
        if let Some(t) = &defs.tenants {
            for skipped in t.apply_policies(&mut policies) {
                warn!(%skipped, "saved policy not restored");
            }
        }
        for v in access.vhosts() {
            vhosts.insert(
                v.name.clone(),
                Arc::new(RwLock::new(VirtualHost::new(v.name.clone()))),
            );
        }
        if let Some(s) = &storage {
            s.restore(&defs, &mut vhosts)?;
        }
        let alarms = spawn_monitor(config.alarms.clone(), config.data_dir.clone());
        let broker = Arc::new(Broker {
            alarms,
            started: std::time::Instant::now(),
            stats: MessageStats::default(),
            churn: Churn::default(),
            gauges: RwLock::new(HashMap::new()),
            vhost_stats: RwLock::new(HashMap::new()),
            config,
            vhosts: RwLock::new(vhosts),
            access: RwLock::new(access),
            policies: RwLock::new(policies),
            access_generation: AtomicU64::new(1),
            connections: ConnectionRegistry::default(),
            next_connection: AtomicU64::new(1),
            next_consumer: AtomicU64::new(1),
            replies: ReplyRegistry::default(),
            storage,
            synced,
            _sync_source: sync_source,
        });
        spawn_sampler(&broker);
        // Recovered queues learn where they live, and start their timers.
        let all: Vec<(String, Arc<VHost>)> = broker
            .vhosts
            .read()
            .iter()
            .map(|(n, v)| (n.clone(), Arc::clone(v)))
            .collect();
        for (name, vhost) in all {
            let queues: Vec<Arc<QueueCell>> =
                vhost.read().queues().map(|(_, q)| Arc::clone(q)).collect();
            for q in queues {
                q.set_home(broker.home(&name));
            }
            broker.apply_policies(&name);
        }
        if let Some(s) = &broker.storage {
            // The default user and vhost of a first start are definitions
            // from now on; and from here on every vhost's changes are saved.
            s.records
                .tenants(&broker.access.read(), &broker.policies.read());
            for topo in broker.vhosts.read().values() {
                topo.write().record_changes(true);
            }
        }
        Ok(broker)
    }

    /// Where a queue of vhost `name` lives.
    pub fn home(self: &Arc<Self>, name: &str) -> Home {
        Home {
            broker: Arc::downgrade(self),
            vhost: self
                .vhosts
                .read()
                .get(name)
                .map(Arc::downgrade)
                .unwrap_or_default(),
            vhost_name: name.to_string(),
            gauges: self.gauges_of(name),
        }
    }

    /// A vhost's queue totals.
    pub fn gauges_of(&self, vhost: &str) -> Arc<QueueGauges> {
        shared_entry(&self.gauges, vhost)
    }

    /// A vhost's message counters.
    pub fn message_stats_of(&self, vhost: &str) -> Arc<MessageStats> {
        shared_entry(&self.vhost_stats, vhost)
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    pub fn alarms(&self) -> watch::Receiver<Alarms> {
        self.alarms.clone()
    }

    pub fn synced(&self) -> watch::Receiver<SyncTicket> {
        self.synced.clone()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_consumer_id(&self) -> u64 {
        self.next_consumer.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a queue with these properties keeps its messages on disk and
    /// its definition across restarts (durable and not exclusive, as in
    /// RabbitMQ, and only with a data directory).
    pub fn is_persistent(&self, durable: bool, exclusive: bool) -> bool {
        self.storage.is_some() && durable && !exclusive
    }

    /// Creates the cell of a new queue of `vhost`, with a disk store if it
    /// persists, and the policies that apply to it.
    pub fn new_queue(
        &self,
        vhost: &str,
        mut spec: QueueSpec,
    ) -> Result<Arc<QueueCell>, StoreError> {
        let levels = priority_levels(&spec);
        let store: Box<dyn MessageStore> = match &self.storage {
            Some(s) if spec.durable && spec.exclusive_owner.is_none() => {
                spec.id = s.next_queue_id.fetch_add(1, Ordering::SeqCst);
                s.open_queue_store(spec.id, levels, is_quorum(&spec))?
            }
            Some(s) => {
                // A priority queue's levels share one queue's memory budget.
                let n = levels.unwrap_or(1);
                let whole = SpillLimits::default();
                let limits = SpillLimits {
                    bytes: (whole.bytes / n as u64).max(1),
                    messages: (whole.messages / n).max(1),
                };
                by_priority(levels, || {
                    Ok(Box::new(SpillStore::new(limits, s.spill_opener())))
                })?
            }
            None => by_priority(levels, || Ok(Box::<MemoryStore>::default()))?,
        };
        let cell = QueueCell::with_store(spec, store);
        Churn::bump(&self.churn.queues_created, 1);
        cell.set_policies(self.queue_policies(vhost, cell.name(), cell.kind()));
        Ok(cell)
    }

    /// Saves what changed in a vhost's topology. Called with the
    /// topology's write lock held, right after the change.
    pub fn persist(&self, vhost: &str, topo: &mut VirtualHost<Arc<QueueCell>>) {
        if let Some(s) = &self.storage {
            s.records.topology(vhost, topo);
        }
    }

    /// Saves the tenant registry's changes.
    pub(crate) fn persist_tenants(&self) {
        if let Some(s) = &self.storage {
            s.records
                .tenants(&self.access.read(), &self.policies.read());
        }
    }

    /// Deletes the saved topology of a vhost being deleted.
    pub(crate) fn forget_topology(&self, vhost: &str, topo: &VirtualHost<Arc<QueueCell>>) {
        if let Some(s) = &self.storage {
            s.records.forget_topology(vhost, topo);
        }
    }

    /// Waits until every definition saved so far is on stable storage
    /// (the management API answers a change after this, as a durable
    /// declare's effects are durable before a later confirm).
    pub async fn definitions_synced(&self) {
        let Some(s) = &self.storage else {
            return;
        };
        let ticket = s.records.last_ticket();
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|t| *t >= ticket).await;
    }

    /// Whether changes are saved (there is a data directory).
    pub(crate) fn is_durable(&self) -> bool {
        self.storage.is_some()
    }

    /// Syncs everything written and stops the storage threads.
    pub fn shutdown(&self) {
        if let Some(s) = &self.storage {
            s.sync.shutdown();
        }
    }
}

impl Storage {
    fn queue_dir(&self, id: u64) -> PathBuf {
        self.dir.join("queues").join(id.to_string())
    }

    /// Opens fresh spill stores for a transient queue, each in a directory
    /// of its own under `transient/`.
    fn spill_opener(&self) -> SpillOpener {
        let disk = Arc::clone(&self.disk);
        let sync = Arc::clone(&self.sync);
        let base = self.dir.join("transient");
        let ids = Arc::clone(&self.next_spill_id);
        Box::new(move || {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            let options = StoreOptions {
                durable: false,
                ..StoreOptions::default()
            };
            DiskQueueStore::open_with_options(
                Arc::clone(&disk),
                base.join(id.to_string()),
                Arc::clone(&sync),
                options,
            )
        })
    }

    /// Opens (or creates) the store of durable queue `id`: its directory,
    /// or one subdirectory per priority level of a priority queue. A
    /// quorum queue's store keeps every message across a restart.
    fn open_queue_store(
        &self,
        id: u64,
        levels: Option<usize>,
        quorum: bool,
    ) -> Result<Box<dyn MessageStore>, StoreError> {
        let dir = self.queue_dir(id);
        let options = StoreOptions {
            persist_all: quorum,
            ..StoreOptions::default()
        };
        let open = |dir: PathBuf| -> Result<Box<dyn MessageStore>, StoreError> {
            Ok(Box::new(DiskQueueStore::open_with_options(
                Arc::clone(&self.disk),
                dir,
                Arc::clone(&self.sync),
                options.clone(),
            )?))
        };
        match levels {
            None => open(dir),
            Some(n) => {
                let levels = (0..n)
                    .map(|l| open(dir.join(format!("p{l}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Box::new(PriorityStore::new(levels)))
            }
        }
    }

    /// Rebuilds durable topology from saved definitions and removes the
    /// storage of queues that are no longer defined.
    fn restore(
        &self,
        defs: &Definitions,
        vhosts: &mut HashMap<String, Arc<VHost>>,
    ) -> Result<(), StartError> {
        let mut live = std::collections::HashSet::new();
        for (vname, vdefs) in &defs.vhosts {
            let Some(vhost) = vhosts.get_mut(vname) else {
                warn!(vhost = %vname, "definitions for an unknown vhost ignored");
                continue;
            };
            let mut topo = vhost.write();
            for x in &vdefs.exchanges {
                let Ok(kind) = ExchangeKind::parse(&x.kind) else {
                    warn!(exchange = %x.name, kind = %x.kind, "unknown exchange type ignored");
                    continue;
                };
                let spec = ExchangeSpec {
                    name: x.name.clone(),
                    kind,
                    durable: true,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: x.arguments.0.clone(),
                };
                match topo.declare_exchange(spec, false) {
                    Ok(_) => {
                        if let Some(user) = &x.created_by {
                            topo.set_creator(&x.name, user);
                        }
                    }
                    Err(err) => warn!(exchange = %x.name, %err, "cannot restore exchange"),
                }
            }
            for q in &vdefs.queues {
                live.insert(q.id);
                let spec = QueueSpec {
                    name: q.name.clone(),
                    id: q.id,
                    durable: true,
                    exclusive_owner: None,
                    auto_delete: q.auto_delete,
                    arguments: q.arguments.0.clone(),
                };
                let store = self
                    .open_queue_store(q.id, priority_levels(&spec), is_quorum(&spec))
                    .map_err(|source| StartError::Queue {
                        queue: q.name.clone(),
                        source,
                    })?;
                let cell = QueueCell::with_store(spec, store);
                info!(vhost = %vname, queue = %q.name, messages = cell.counts().0, "queue recovered");
                topo.insert_queue(q.name.clone(), cell);
            }
            for b in &vdefs.bindings {
                let dest = if b.destination_is_queue {
                    Destination::Queue(b.destination.clone())
                } else {
                    Destination::Exchange(b.destination.clone())
                };
                if let Err(err) = topo.bind(&b.source, dest, &b.routing_key, &b.arguments.0) {
                    warn!(source = %b.source, destination = %b.destination, %err, "cannot restore binding");
                }
            }
        }
        // Storage of queues deleted while their definition was not saved.
        if let Ok(entries) = std::fs::read_dir(self.dir.join("queues")) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let id = name.to_str().and_then(|s| s.parse::<u64>().ok());
                if id.is_some_and(|id| !live.contains(&id)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// The value for `key`, made on first use.
fn shared_entry<T: Default>(map: &RwLock<HashMap<String, Arc<T>>>, key: &str) -> Arc<T> {
    if let Some(v) = map.read().get(key) {
        return Arc::clone(v);
    }
    Arc::clone(map.write().entry(key.to_string()).or_default())
}

/// Samples the message counters once a second while the broker lives.
fn spawn_sampler(broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let Some(broker) = weak.upgrade() else {
                return;
            };
            let now = std::time::Instant::now();
            broker.stats.sample(now);
            let vhosts: Vec<Arc<MessageStats>> =
                broker.vhost_stats.read().values().cloned().collect();
            for stats in vhosts {
                stats.sample(now);
            }
        }
    });
}

/// The registry at start: the saved one, or (on a first start) the default
/// user with all permissions in the default vhost.
fn tenants_of(config: &ServerConfig, defs: &Definitions) -> AccessControl {
    let mut ac = AccessControl::new();
    ac.set_loopback_users(config.loopback_users.clone());
    match &defs.tenants {
        Some(t) => {
            for skipped in t.apply_to(&mut ac) {
                warn!(%skipped, "saved definition not restored");
            }
        }
        None => {
            ac.put_vhost(VhostInfo::new(config.default_vhost.clone()));
            ac.put_user(User {
                name: config.default_user.clone(),
                password: PasswordHash::new(
                    HashingAlgorithm::Sha256,
                    crate::tenants::salt(),
                    &config.default_pass,
                ),
                tags: config.default_user_tags.clone(),
            });
            let _ = ac.set_permissions(
                &config.default_user,
                &config.default_vhost,
                Permissions::all(),
            );
        }
    }
    ac
}

/// The number of priority levels of a priority queue (`x-max-priority` +
/// 1), `None` for a queue without priorities.
fn priority_levels(spec: &QueueSpec) -> Option<usize> {
    QueueConfig::from_arguments(&spec.name, &spec.arguments)
        .max_priority
        .map(|p| usize::from(p) + 1)
}

fn is_quorum(spec: &QueueSpec) -> bool {
    QueueConfig::from_arguments(&spec.name, &spec.arguments).kind == QueueKind::Quorum
}

/// One store, or a [`PriorityStore`] of one per level.
fn by_priority(
    levels: Option<usize>,
    mut make: impl FnMut() -> Result<Box<dyn MessageStore>, StoreError>,
) -> Result<Box<dyn MessageStore>, StoreError> {
    match levels {
        None => make(),
        Some(n) => Ok(Box::new(PriorityStore::new(
            (0..n).map(|_| make()).collect::<Result<_, _>>()?,
        ))),
    }
}
