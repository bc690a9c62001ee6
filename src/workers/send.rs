//! One HTTP request of a delivery to its target.

use std::time::Duration;

use super::error::SendError;
use super::Outgoing;

/// A target's HTTP client (rustls): no redirects followed (a 3xx is a failed attempt, see
/// `SendError::Redirected`), and a time limit per request so a hung target fails the attempt.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Send `out` with its idempotency key; Ok only for a 2xx answer.
pub async fn send(client: &reqwest::Client, out: Outgoing, key: &str) -> Result<(), SendError> {
    let url = out.url;
    let mut req = client
        .request(out.method, &url)
        .header("Idempotency-Key", key)
        .header("Content-Type", out.content_type)
        .body(out.body);
    if let Some(token) = &out.bearer {
        req = req.bearer_auth(token);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(source) => return Err(SendError::Transport { url, source }),
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(no Location)")
            .to_string();
        return Err(SendError::Redirected {
            url,
            status,
            location,
        });
    }
    // The start of the answer says why; a failed read of it leaves it empty.
    let body = resp.text().await.unwrap_or_default();
    Err(SendError::Refused {
        url,
        status,
        body: body.chars().take(200).collect(),
    })
}
