//! The query engine: the model of a query (level, keys, matching) and its execution over the
//! index, choosing a secondary index for the candidates and filtering them with PS3.4 C.2.2.2
//! matching. One engine for C-FIND and QIDO-RS.

mod engine;
pub mod matching;

pub use engine::{
    execute, is_supported, resolve_instances, Level, Query, QueryError, QueryKey, QueryMatch,
};
pub use matching::{MatchOptions, Matcher, MatcherError};
