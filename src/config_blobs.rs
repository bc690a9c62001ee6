//! `[blobs]`: where instance files live. Absent: files in `<data>/blobs`. With
//! `url = "s3://bucket/prefix"`: an S3-compatible bucket, shared by every node of a site
//! (`PACS_BLOBS_URL` and `PACS_BLOBS_ENDPOINT` override the file; credentials from the keys
//! or `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsConfig {
    pub url: Option<String>,
    /// Any S3-compatible service, e.g. "https://s3.example.org".
    pub endpoint: Option<String>,
    /// [default: us-east-1]
    pub region: Option<String>,
    /// Allow a plain-http endpoint [default: false].
    pub allow_http: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The bucket settings, when blobs are not local files.
pub fn resolve(
    file: Option<&BlobsConfig>,
) -> Result<Option<pacs_storage::blob::S3Settings>, ConfigError> {
    let file = file.cloned().unwrap_or_default();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(url) = env("PACS_BLOBS_URL").or(file.url) else {
        return Ok(None);
    };
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        ConfigError::Invalid(format!("[blobs] url {url:?} must be s3://bucket[/prefix]"))
    })?;
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err(ConfigError::Invalid(format!(
            "[blobs] url {url:?} names no bucket"
        )));
    }
    let endpoint = env("PACS_BLOBS_ENDPOINT").or(file.endpoint);
    let allow_http = file.allow_http.unwrap_or(false);
    if let Some(e) = &endpoint {
        if e.starts_with("http://") && !allow_http {
            return Err(ConfigError::Invalid(format!(
                "[blobs] endpoint {e:?} is plain http: set allow_http = true to accept that"
            )));
        }
    }
    Ok(Some(pacs_storage::blob::S3Settings {
        url,
        endpoint,
        region: file.region,
        allow_http,
        access_key_id: file.access_key_id,
        secret_access_key: file.secret_access_key,
    }))
}
