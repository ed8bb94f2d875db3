//! What Magnum's conductor does with updates the API already answered 202 for: the API casts
//! them to the conductor, which refuses some of them afterwards, so the client never hears.
//!
//! - An update (`PATCH /clusters/{id}`: `health_status`, `node_count`) of a cluster that is
//!   not in a `*_COMPLETE` state is dropped (`cluster_update`'s `allow_update_status`:
//!   "Updating a cluster when status is ... is not supported"); `*_IN_PROGRESS` is handled by
//!   [`crate::state::State::admit_cluster_update`], this is the rest (`*_FAILED`).
//! - A resize fails in the conductor when the driver cannot carry it out (Magnum without
//!   Heat): the cluster and the nodegroup go `UPDATE_FAILED` with the driver's error as
//!   `status_reason`, and the nodegroup keeps its old size. [`crate::Sim::fail_cluster_updates`]
//!   makes every resize of a cluster fail so.

use jiff::Timestamp;

use crate::Sim;
use crate::state::Cluster;

/// Whether the conductor drops a PATCH update of `c` that the API accepted.
pub(crate) fn drops_update(c: &Cluster) -> bool {
    c.status.ends_with("_FAILED")
}

/// Fails a resize of `nodegroup` of `c` as the conductor does when its driver raises: returns
/// false (the resize goes ahead) unless the cluster is set to fail its updates.
pub(crate) fn fail_resize(c: &mut Cluster, nodegroup: &str) -> bool {
    let Some(reason) = c.failing_updates.clone() else {
        return false;
    };
    let now = Timestamp::now();
    c.status = "UPDATE_FAILED".into();
    c.status_reason = Some(reason.clone());
    c.updated_at = Some(now);
    if let Some(ng) = c.nodegroups.iter_mut().find(|n| n.name == nodegroup) {
        ng.status = "UPDATE_FAILED".into();
        ng.status_reason = Some(reason);
        ng.updated_at = Some(now);
    }
    true
}

impl Sim {
    /// From now on every resize of cluster `id` fails in the conductor with `reason` (as
    /// Magnum's driver error reads, e.g. Heat unreachable); None: resizes work again.
    pub fn fail_cluster_updates(&self, id: &str, reason: Option<&str>) {
        let found = self.with(|st| {
            let uuid = st.find_cluster(id).ok()?.uuid.clone();
            st.clusters.get_mut(&uuid)?.failing_updates = reason.map(str::to_string);
            Some(())
        });
        if found.is_none() {
            tracing::warn!(cluster = id, "fail_cluster_updates: no such cluster");
        }
    }
}
