//! A small client of `/api/v1`, for the CLI's remote commands.

use axum::body::Bytes;
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

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        self.send(Method::POST, path, body).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Decode {
                server: self.base.clone(),
                message: e.to_string(),
            })?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                server: self.base.clone(),
                message: e.to_string(),
            })?;
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
        let json: Value = serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            server: self.base.clone(),
            message: format!("{status}: {e}"),
        })?;
        if status.is_success() {
            Ok(json)
        } else {
            Err(ClientError::Api {
                status,
                code: json["error"]["code"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
                message: json["error"]["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_string(),
            })
        }
    }
}
