//! Leader election on a coordination.k8s.io Lease, with client-go's timings: a candidate takes the Lease only after it has seen no change to it for the lease duration in its own clock; the leader renews every 2 s and steps down after 10 s without a successful renewal.
//!
//! Correctness never depends on this: every write that matters (fences, the shard table) is a
//! compare-and-swap. The Lease only keeps two replicas from doing the same work.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{is_conflict, is_not_found};

/// Lease timings.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name plus a random suffix).
    pub identity: String,
    /// How long a Lease must stay unchanged before another replica takes it.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// The leader steps down after this long without a successful renewal.
    pub renew_deadline: Duration,
}

impl LeaderConfig {
    /// client-go's defaults: 15 s lease, renew every 2 s, give up after 10 s.
    pub fn new(namespace: String, identity: String) -> Self {
        Self {
            namespace,
            name: "kinesis-operator-leader".into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }
}

/// What one attempt to acquire or renew found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease.
    Held,
    /// Someone else holds it; its `resourceVersion`.
    Other(String),
}

/// Waits until this replica leads; `false` if `stop` fired first.
pub async fn acquire(client: &Client, cfg: &LeaderConfig, stop: &CancellationToken) -> bool {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    // The version we saw and when we first saw it, in our own clock.
    let mut seen: Option<(String, Instant)> = None;
    loop {
        match try_acquire(&api, cfg, seen.as_ref()).await {
            Ok(Attempt::Held) => {
                info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                return true;
            }
            Ok(Attempt::Other(rv)) => {
                if seen.as_ref().is_none_or(|(v, _)| *v != rv) {
                    info!(lease = %cfg.name, "another replica leads; standing by");
                    seen = Some((rv, Instant::now()));
                }
            }
            Err(e) => {
                warn!(error = %e, lease = %cfg.name, "cannot read or take the leader Lease; retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(cfg.renew_period) => {}
        }
    }
}

async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaderConfig,
    seen: Option<&(String, Instant)>,
) -> Result<Attempt, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let current = match api.get(&cfg.name).await {
        Ok(l) => l,
        Err(e) if is_not_found(&e) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs(cfg.lease_duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(e) if is_conflict(&e) => Ok(Attempt::Other(String::new())),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let rv = current
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == cfg.identity;
    let free = holder.is_empty();
    let stale = seen.is_some_and(|(v, at)| *v == rv && at.elapsed() >= cfg.lease_duration);
    if !(mine || free || stale) {
        return Ok(Attempt::Other(rv));
    }
    let mut next = current;
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    next.spec = Some(LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(secs(cfg.lease_duration)),
        acquire_time: if mine {
            spec.acquire_time
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..Default::default()
    });
    // The resourceVersion in `next` makes this a compare-and-swap.
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(Attempt::Held),
        Err(e) if is_conflict(&e) => Ok(Attempt::Other(rv)),
        Err(e) => Err(e),
    }
}

/// Renews the Lease until `stop` fires (then releases it) or renewal fails for the renew
/// deadline (then fires `lost`).
///
/// Every renewal is bounded by what is left of the renew deadline, and a renewal counts from
/// when it was sent, not when it returned: so a hung request never keeps a deposed leader
/// acting, and `lost` fires before `lease_duration` has passed since the last renewal the API
/// server could have stored, which is the earliest a standby may take the Lease.
pub async fn keep(
    client: Client,
    cfg: LeaderConfig,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(next_renewal(&cfg, last_ok)) => {}
        }
        let sent = Instant::now();
        let left = cfg
            .renew_deadline
            .saturating_sub(sent.duration_since(last_ok));
        match tokio::time::timeout(left, try_acquire(&api, &cfg, None)).await {
            Ok(Ok(Attempt::Held)) => last_ok = sent,
            Ok(Ok(Attempt::Other(_))) => {
                warn!(lease = %cfg.name, "another replica took the leader Lease; stepping down");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => warn!(error = %e, "cannot renew the leader Lease"),
            Err(_) => warn!(after = ?left, "renewing the leader Lease timed out"),
        }
        if last_ok.elapsed() >= cfg.renew_deadline {
            warn!(lease = %cfg.name, "could not renew the leader Lease in time; stepping down");
            lost.cancel();
            return;
        }
    }
    release(&api, &cfg).await;
}

/// When to renew next: a renew period after the last success, but never later than the renew
/// deadline (so a failed renewal still leaves time to notice the deadline).
fn next_renewal(cfg: &LeaderConfig, last_ok: Instant) -> Instant {
    let now = Instant::now();
    (now + cfg.renew_period).min((last_ok + cfg.renew_deadline).max(now))
}

/// Gives the Lease up so a standby takes over at once instead of after the lease duration.
async fn release(api: &Api<Lease>, cfg: &LeaderConfig) {
    let Ok(mut lease) = api.get(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "released the leader Lease"),
        Err(e) => {
            warn!(error = %e, "could not release the leader Lease; a standby takes over after it expires")
        }
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// An API server that accepts connections and never answers.
    async fn silent_api() -> (Client, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let accept = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let config = kube::Config::new(url.parse().expect("url"));
        (Client::try_from(config).expect("client"), accept)
    }

    #[tokio::test]
    async fn a_hung_renewal_steps_down_within_the_renew_deadline() {
        let (client, accept) = silent_api().await;
        let cfg = LeaderConfig {
            renew_period: Duration::from_millis(50),
            renew_deadline: Duration::from_millis(300),
            lease_duration: Duration::from_millis(500),
            ..LeaderConfig::new("default".into(), "me".into())
        };
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let keeper = tokio::spawn(keep(client, cfg.clone(), stop.clone(), lost.clone()));
        // Without a bound on each renewal, the hung request holds `keep` for kube's own read
        // timeout (minutes) and a deposed leader goes on acting.
        tokio::time::timeout(Duration::from_secs(30), lost.cancelled())
            .await
            .expect("stepped down while the API server hangs");
        stop.cancel();
        keeper.abort();
        accept.abort();
    }

    #[test]
    fn the_next_renewal_never_passes_the_deadline() {
        let cfg = LeaderConfig::new("ns".into(), "me".into());
        let long_ago = Instant::now() - cfg.renew_deadline;
        assert!(next_renewal(&cfg, long_ago) <= Instant::now() + Duration::from_millis(1));
        let just_now = Instant::now();
        assert!(next_renewal(&cfg, just_now) >= just_now + cfg.renew_period);
    }
}
