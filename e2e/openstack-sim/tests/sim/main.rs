//! The simulator over HTTP, as nodehealer's OpenStack client sees it. One test binary with
//! a module per service keeps the build short.

mod actions;
mod common;
mod control;
mod faults;
mod fixtures;
mod keystone;
mod magnum;
mod nova;
mod regions;
