//! A small client of `/api/v1`, for the CLI's remote commands.

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "server `{0}` must be an http:// URL (put TLS in front of the server with a proxy, and use it from the proxy's side)"
    )]
    Scheme(String),
    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },
    #[error("{message} ({status}, {code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("unexpected answer from {server}: {message}")]
    Decode { server: String, message: String },
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    /// `message` when the server named none.
    pub event: String,
    pub data: String,
}

/// An open event stream.
pub struct EventStream {
    server: String,
    body: Body,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<SseMessage>, ClientError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(message) = parse_event(&String::from_utf8_lossy(&block)) {
                    return Ok(Some(message));
                }
                continue;
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ClientError::Connect {
                        server: self.server.clone(),
                        message: e.to_string(),
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// One event block; comments (keep-alives) alone are no event.
fn parse_event(block: &str) -> Option<SseMessage> {
    let mut message = SseMessage::default();
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => message.id = Some(value.to_string()),
            "event" => message.event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() && message.event.is_empty() {
        return None;
    }
    if message.event.is_empty() {
        message.event = "message".into();
    }
    message.data = data.join("\n");
    Some(message)
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Scheme(base));
        }
        Ok(Client {
            base,
            token,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None).await
    }

    /// Opens an event stream, resuming after `last_event_id`.
    pub async fn events(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        let mut headers = vec![("accept", "text/event-stream".to_string())];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id.to_string()));
        }
        let resp = self
            .dispatch(Method::GET, path, &headers, Bytes::new())
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = Body::new(resp.into_body());
            return Err(self.error_from(status, body).await);
        }
        Ok(EventStream {
            server: self.base.clone(),
            body: Body::new(resp.into_body()),
            buf: Vec::new(),
        })
    }

    async fn error_from(&self, status: StatusCode, body: Body) -> ClientError {
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return ClientError::Connect {
                    server: self.base.clone(),
                    message: e.to_string(),
                };
            }
        };
        api_error(status, &bytes)
    }

    /// A DELETE; the answer has no body.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let (status, body) = self.exchange(Method::DELETE, path, None).await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(())
    }

    /// A raw download (artifacts).
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ClientError> {
        let (status, body) = self.exchange(Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(body)
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        self.send(Method::POST, path, body).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let (status, body) = self.exchange(method, path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            server: self.base.clone(),
            message: format!("{status}: {e}"),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let headers = [("content-type", "application/json".to_string())];
        let resp = self.dispatch(method, path, &headers, bytes).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connect {
                server: self.base.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        Ok((status, body))
    }
}

impl Client {
    /// Sends one request with the token and `headers`.
    async fn dispatch(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| ClientError::Decode {
            server: self.base.clone(),
            message: e.to_string(),
        })?;
        self.http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                server: self.base.clone(),
                message: e.to_string(),
            })
    }
}

/// The API's JSON error, or what can be said without one.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    ClientError::Api {
        status,
        code: json["error"]["code"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        message: json["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_blocks_parse_and_keep_alives_are_skipped() {
        assert_eq!(
            parse_event("id: 7\nevent: log\ndata: {\"a\":1}\n"),
            Some(SseMessage {
                id: Some("7".into()),
                event: "log".into(),
                data: "{\"a\":1}".into(),
            })
        );
        assert_eq!(parse_event(":\n"), None);
        assert_eq!(
            parse_event("data: one\ndata: two"),
            Some(SseMessage {
                id: None,
                event: "message".into(),
                data: "one\ntwo".into(),
            })
        );
    }
}
