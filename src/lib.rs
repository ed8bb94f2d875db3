//! nodehealer: keeps the nodes of Kubernetes clusters on OpenStack healthy.
//!
//! The crate is organised by concern, so a behaviour can be found from the module names:
//! `api` (the CRD types), `health` (is this node healthy?), `decide` (may we act?),
//! `openstack` (the cloud), `controller` (the reconcilers, thin), `leader` (leader election),
//! `server` (health and metrics endpoints), `error` (the one error type).
#![forbid(unsafe_code)]

pub mod api;
pub mod controller;
pub mod decide;
pub mod error;
pub mod health;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod openstack;
pub mod readiness;
pub mod release;
pub mod remediation;
pub mod server;
