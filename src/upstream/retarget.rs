//! Pointing a running upstream at new addresses (a configuration reload with a new
//! `upstream` URL): a new server for a single-node URL, a new set of sentinels, a new list
//! of cluster seeds. Client connections stay; requests already sent finish where they went.
//!
//! Only the addresses may change live. A different kind of topology, Sentinel master name,
//! database or credentials changes what every pooled connection is, so it needs a restart
//! (the reload reports it). A new sentinel set is asked before anything changes, so a set
//! that does not answer leaves the running one in place.
//!
//! A sentinel removed from the set stops being followed once its connection ends (its
//! `+switch-master` events are about the same master, so until then they are still true).

use super::url::{Topology, UpstreamUrl};
use super::{follow_sentinel, sentinel, Upstream};

impl Upstream {
    /// The URL the upstream follows now (the start-up one until a reload changes it).
    pub fn url(&self) -> UpstreamUrl {
        self.shared.target()
    }

    /// Follows `url` from now on. `Ok(false)`: nothing to change; `Err`: the change needs a
    /// restart, or the new sentinels do not answer (nothing changed then).
    pub async fn retarget(&self, url: &UpstreamUrl) -> Result<bool, String> {
        let current = self.shared.target();
        if *url == current {
            return Ok(false);
        }
        if url.db != current.db || url.user != current.user || url.password != current.password {
            return Err("the upstream's database or credentials changed: restart needed".into());
        }
        match (&current.topology, &url.topology) {
            (Topology::Single(_), Topology::Single(addr)) => {
                self.shared.set_view(addr, &[]);
            }
            (
                Topology::Sentinel { master: m1, .. },
                Topology::Sentinel {
                    sentinels,
                    master: m2,
                },
            ) if m1 == m2 => {
                let view = sentinel::discover(
                    sentinels,
                    m2,
                    self.opts.tls.as_ref(),
                    self.opts.connect_timeout,
                )
                .await?;
                let before = self.shared.sentinels();
                *self
                    .shared
                    .target
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = url.clone();
                for s in sentinels.iter().filter(|s| !before.contains(s)) {
                    follow_sentinel(&self.shared, s.clone(), m2.clone());
                }
                self.shared.set_view(&view.primary, &view.replicas);
            }
            (Topology::Cluster(_), Topology::Cluster(_)) => {
                *self
                    .shared
                    .target
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = url.clone();
                self.shared.refresh.notify_one();
            }
            _ => {
                return Err(
                    "the upstream's kind of topology (or Sentinel master) changed: restart needed"
                        .into(),
                )
            }
        }
        *self
            .shared
            .target
            .write()
            .unwrap_or_else(|p| p.into_inner()) = url.clone();
        self.opts.note(format!("now following {url}"));
        tracing::warn!("upstream: now following {url} (was {current})");
        Ok(true)
    }
}
