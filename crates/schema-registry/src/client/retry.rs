//! Which failures are worth another attempt, and how long to wait before it.

/// 408 and 429 say "later"; 5xx says "this server, now": all may succeed on retry or on another
/// URL. Every other 4xx is the registry's final word on this request.
pub(crate) fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Connection failures and timeouts, and bodies cut off mid-read; never a malformed request.
pub(crate) fn error_is_retryable(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_retryable(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 409, 422] {
            assert!(!status_is_retryable(status), "{status}");
        }
    }

    #[tokio::test]
    async fn connection_errors_are_retryable() {
        // A port nothing listens on: bind, learn the port, drop the listener.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap_err();
        assert!(error_is_retryable(&err), "{err:?}");
    }
}
