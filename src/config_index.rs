//! `[index]`: where the study index lives. Absent: RocksDB in `<data>/index`. With
//! `url = "postgres://..."`: a PostgreSQL database shared by every node of a site
//! (`PACS_INDEX_URL` overrides the file).

use serde::Deserialize;

use crate::config::ConfigError;

/// Connections per node when `max_connections` is not set.
const DEFAULT_MAX_CONNECTIONS: usize = 16;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// e.g. "postgres://pacs@db.example.org:5432/pacs"
    pub url: Option<String>,
    /// Pool size of this node [default: 16].
    pub max_connections: Option<usize>,
}

/// The database settings, when the index is not the embedded one.
pub fn resolve(
    file: Option<&IndexConfig>,
) -> Result<Option<pacs_storage::IndexSettings>, ConfigError> {
    let file = file.cloned().unwrap_or_default();
    let env_url = std::env::var("PACS_INDEX_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(url) = env_url.or(file.url) else {
        return Ok(None);
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::Invalid(
            "[index] url must be postgres://user@host:port/database".into(),
        ));
    }
    let max_connections = file.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(2..=1000).contains(&max_connections) {
        return Err(ConfigError::Invalid(format!(
            "[index] max_connections = {max_connections}: between 2 and 1000"
        )));
    }
    Ok(Some(pacs_storage::IndexSettings {
        url,
        max_connections,
    }))
}
