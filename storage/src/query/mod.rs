//! The query engine: the model of a query (level, keys, matching) and its execution over the
//! index, choosing a secondary index for the candidates and filtering them with PS3.4 C.2.2.2
//! matching. One engine for C-FIND and QIDO-RS.

mod engine;
pub mod matching;
pub mod model;

pub use engine::{execute, resolve_instances};
pub use matching::{MatchOptions, Matcher, MatcherError};
pub use model::{is_supported, Level, Query, QueryError, QueryKey, QueryMatch};
