//! The topology side of a queue's life: deleting it (queue.delete,
//! auto-delete, exclusive owner gone, `x-expires` run out), which removes
//! it and its bindings from the vhost, saves the definitions and cancels
//! its consumers.
//!
//! Lock order: the topology lock first, then the queue's lock (to check and
//! mark it deleted); consumers are told after both are released.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{error, info};
use warren_core::{AmqpError, Effects};

use crate::broker::{Broker, VHost};
use crate::connection::ConnEvent;
use crate::queue::{now_ms, QueueCell};

/// When a queue may be deleted.
#[derive(Default, Clone, Copy)]
pub struct DeleteWhen<'a> {
    /// queue.delete `if-unused`: refuse (406) while it has consumers.
    pub if_unused: bool,
    /// queue.delete `if-empty`: refuse (406) while it holds ready messages.
    pub if_empty: bool,
    /// Only this very queue, and only while it has no consumer: quietly
    /// kept otherwise (auto-delete, `x-expires`).
    pub idle: Option<&'a Arc<QueueCell>>,
}

/// Deletes queue `name` of `vhost`. Returns how many ready messages it
/// held (0 if it does not exist).
pub fn delete_queue(
    broker: &Broker,
    vhost: &VHost,
    vhost_name: &str,
    name: &str,
    when: DeleteWhen<'_>,
) -> Result<u32, AmqpError> {
    let mut topo = vhost.write();
    let Some(q) = topo.queue(name).cloned() else {
        return Ok(0);
    };
    if when.idle.is_some_and(|cell| !Arc::ptr_eq(cell, &q)) {
        return Ok(0);
    }
    {
        let inner = q.lock();
        let in_use = inner.queue.consumer_count() > 0;
        if when.idle.is_some() && in_use {
            return Ok(0);
        }
        if when.if_unused && in_use {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '{vhost_name}' in use"
            )));
        }
        if when.if_empty && inner.queue.ready_count() > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '{vhost_name}' not empty"
            )));
        }
    }
    topo.remove_queue(name);
    crate::stats::Churn::bump(&broker.churn.queues_deleted, 1);
    broker.persist(vhost_name, &mut topo);
    drop(topo);
    let mut fx = Effects::default();
    let count = {
        let mut inner = q.lock();
        inner.deleted = true;
        let count = inner.queue.ready_count() as u32;
        if let Err(err) = inner.queue.delete(&mut fx) {
            error!(queue = name, %err, "cannot remove stored messages");
        }
        count
    };
    for c in fx.cancelled {
        c.cancelled.store(true, Ordering::SeqCst);
        let _ = c.tx.send(ConnEvent::Cancelled {
            consumer: Arc::clone(&c),
        });
    }
    Ok(count)
}

/// Deletes a queue whose `x-expires` ran out, unless it was used (or
/// replaced) meanwhile.
pub fn expire_queue(broker: &Broker, vhost: &VHost, vhost_name: &str, queue: &Arc<QueueCell>) {
    {
        let inner = queue.lock();
        if inner.deleted || !inner.queue.idle_expired(now_ms()) {
            return;
        }
    }
    let when = DeleteWhen {
        idle: Some(queue),
        ..Default::default()
    };
    if let Ok(messages) = delete_queue(broker, vhost, vhost_name, queue.name(), when) {
        info!(
            queue = queue.name(),
            vhost = vhost_name,
            messages,
            "queue expired (x-expires)"
        );
    }
}
