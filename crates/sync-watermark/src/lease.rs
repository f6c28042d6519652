//! One run at a time: the lease in `substrate_leases`, renewed while the run lasts.

use std::time::Duration;

use crm_store::Store;
use crm_store::Timestamp;
use crm_store::phase0::{self, LeaseOutcome, LeaseRequest};
use crm_store::rusqlite::TransactionBehavior;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::LeaseConfig;
use crate::error::SyncError;

/// The name of the lease that backfills, syncs and verifications of `collection` share.
pub fn lease_name(collection: &str) -> String {
    format!("index:{collection}")
}

/// A held lease. Renewed in the background every third of its lifetime; if a renewal
/// finds the lease taken over, [`RunLease::lost`] is cancelled and the run must stop.
pub(crate) struct RunLease {
    store: Store,
    name: String,
    holder: String,
    lost: CancellationToken,
    renewer: JoinHandle<()>,
}

impl RunLease {
    /// Takes the lease or says who holds it. A stale lease (expired, or held by a
    /// process of this host that no longer exists) is taken over with a warning.
    pub(crate) async fn acquire(
        store: &Store,
        collection: &str,
        config: &LeaseConfig,
    ) -> Result<Self, SyncError> {
        let name = lease_name(collection);
        let holder = format!("{}#{}", config.holder, uuid::Uuid::new_v4().simple());
        let request = LeaseRequest {
            name: name.clone(),
            holder: holder.clone(),
            pid: config.pid,
            hostname: config.hostname.clone(),
            ttl: config.ttl,
        };
        let outcome = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<LeaseOutcome, SyncError> {
                let mut conn = store.writer()?;
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|source| crm_store::StoreError::Sqlite {
                        context: format!("starting a transaction to take lease {}", request.name),
                        source,
                    })?;
                let outcome = phase0::acquire_lease(&tx, &request, Timestamp::now())?;
                tx.commit()
                    .map_err(|source| crm_store::StoreError::Sqlite {
                        context: format!("committing lease {}", request.name),
                        source,
                    })?;
                Ok(outcome)
            })
            .await
            .map_err(SyncError::worker)??
        };
        match outcome {
            LeaseOutcome::Acquired(_) => {
                tracing::debug!(lease = %name, holder = %holder, "lease acquired");
            }
            LeaseOutcome::TookOver {
                previous, reason, ..
            } => {
                tracing::warn!(
                    lease = %name,
                    previous_holder = %previous.holder,
                    previous_pid = previous.pid,
                    previous_host = %previous.hostname,
                    since = %previous.acquired_at,
                    reason = ?reason,
                    "recovered a stale lease left by an interrupted run"
                );
            }
            LeaseOutcome::Held(lease) => {
                return Err(SyncError::LeaseHeld {
                    name,
                    holder: Box::new(lease),
                });
            }
        }
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew_loop(
            store.clone(),
            name.clone(),
            holder.clone(),
            config.ttl,
            lost.clone(),
        ));
        Ok(Self {
            store: store.clone(),
            name,
            holder,
            lost,
            renewer,
        })
    }

    /// Cancelled when the lease was lost.
    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// The lease name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Stops renewing and gives the lease up.
    pub(crate) async fn release(self) -> Result<(), SyncError> {
        self.renewer.abort();
        let store = self.store.clone();
        let name = self.name.clone();
        let holder = self.holder.clone();
        tokio::task::spawn_blocking(move || -> Result<(), SyncError> {
            let mut conn = store.writer()?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|source| crm_store::StoreError::Sqlite {
                    context: format!("starting a transaction to release lease {name}"),
                    source,
                })?;
            let held = phase0::release_lease(&tx, &name, &holder)?;
            tx.commit()
                .map_err(|source| crm_store::StoreError::Sqlite {
                    context: format!("committing the release of lease {name}"),
                    source,
                })?;
            if !held {
                tracing::warn!(lease = %name, "the lease was no longer ours when releasing it");
            }
            Ok(())
        })
        .await
        .map_err(SyncError::worker)?
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        // A lease dropped without `release` (an error path) stops renewing and lapses at
        // its expiry, or sooner when this process is gone.
        self.renewer.abort();
    }
}

async fn renew_loop(
    store: Store,
    name: String,
    holder: String,
    ttl: Duration,
    lost: CancellationToken,
) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let mut deadline = Timestamp::now().saturating_add(ttl);
    loop {
        tokio::time::sleep(every).await;
        let (store2, name2, holder2) = (store.clone(), name.clone(), holder.clone());
        let renewed = tokio::task::spawn_blocking(move || -> Result<bool, SyncError> {
            let mut conn = store2.writer()?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|source| crm_store::StoreError::Sqlite {
                    context: format!("starting a transaction to renew lease {name2}"),
                    source,
                })?;
            let lease = phase0::renew_lease(&tx, &name2, &holder2, ttl, Timestamp::now())?;
            tx.commit()
                .map_err(|source| crm_store::StoreError::Sqlite {
                    context: format!("committing the renewal of lease {name2}"),
                    source,
                })?;
            Ok(lease.is_some())
        })
        .await;
        match renewed {
            Ok(Ok(true)) => deadline = Timestamp::now().saturating_add(ttl),
            Ok(Ok(false)) => {
                tracing::error!(lease = %name, "the lease was taken over by another run");
                lost.cancel();
                return;
            }
            Ok(Err(err)) => {
                tracing::warn!(lease = %name, error = %err, "could not renew the lease; retrying");
                if Timestamp::now() >= deadline {
                    tracing::error!(lease = %name, "the lease expired before it could be renewed");
                    lost.cancel();
                    return;
                }
            }
            Err(err) => {
                tracing::error!(lease = %name, error = %err, "the lease renewal task failed");
                lost.cancel();
                return;
            }
        }
    }
}
