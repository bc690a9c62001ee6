//! Access control for the HTTP API: who the caller is ([`authn`]), what they may do
//! ([`policy`]), and the guard that applies both to every route and audits the outcome.

pub mod authn;
pub mod guard;
pub mod login_api;
pub mod policy;
pub mod principal;
pub mod routes;
pub mod throttle;

pub use guard::{AuditNote, Grant};
pub use policy::{Action, Scope};
pub use principal::{AuthMethod, Principal};
