//! Moving an image between registry locations by digest with oci-client:
//! the manifest is copied as the same bytes (so its digest cannot change),
//! blobs are mounted across repositories instead of downloaded, and
//! nothing goes through a Docker daemon.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use crate::backend::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{reference}` is not an image reference: {message}")]
    Reference { reference: String, message: String },
    #[error("{registry}: {message}")]
    Registry { registry: String, message: String },
    #[error(
        "the copy of {source_ref} at {target} has digest {found}, not {expected}; the registry changed it"
    )]
    DigestMismatch {
        source_ref: String,
        target: String,
        expected: String,
        found: String,
    },
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

fn reference(text: &str) -> Result<Reference, RegistryError> {
    text.parse()
        .map_err(|e: oci_client::ParseError| RegistryError::Reference {
            reference: text.into(),
            message: e.to_string(),
        })
}

/// Registries Docker itself talks plain HTTP to: loopback.
fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

pub struct Copier {
    credentials: Credentials,
    /// Hosts spoken to over plain HTTP besides loopback.
    insecure: Vec<String>,
}

impl Copier {
    pub fn new(credentials: Credentials, insecure: Vec<String>) -> Copier {
        Copier {
            credentials,
            insecure,
        }
    }

    fn auth(&self, registry: &str) -> OciAuth {
        match self.credentials.get(registry) {
            Some(a) => OciAuth::Basic(a.username.clone(), a.password.clone()),
            None => OciAuth::Anonymous,
        }
    }

    fn client(&self, registries: &[&str]) -> Client {
        let plain: Vec<String> = registries
            .iter()
            .filter(|r| is_loopback(r) || self.insecure.iter().any(|i| i == *r))
            .map(|r| r.to_string())
            .chain(self.insecure.iter().cloned())
            .collect();
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            ..Default::default()
        })
    }

    /// The digest `image` (`repo:tag`) points at now, or `None` if it
    /// points at nothing.
    pub async fn digest_of(&self, image: &str) -> Result<Option<String>, RegistryError> {
        let r = reference(image)?;
        let registry = r.resolve_registry().to_string();
        let client = self.client(&[&registry]);
        match client
            .fetch_manifest_digest(&r, &self.auth(&registry))
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
                Ok(None)
            }
            Err(e) => {
                let message = e.to_string();
                if message.contains("MANIFEST_UNKNOWN") || message.contains("NAME_UNKNOWN") {
                    Ok(None)
                } else {
                    Err(RegistryError::Registry { registry, message })
                }
            }
        }
    }

    /// Copies `source` (`repo@sha256:...`) to `target` (`repo:tag`) and
    /// returns the digest now at `target`, checked equal to the source's.
    pub async fn copy(&self, source: &str, target: &str) -> Result<String, RegistryError> {
        let src = reference(source)?;
        let dst = reference(target)?;
        let expected = src
            .digest()
            .map(String::from)
            .ok_or_else(|| RegistryError::Reference {
                reference: source.into(),
                message: "promotions copy by digest: give `repo@sha256:...`".into(),
            })?;
        let (src_reg, dst_reg) = (
            src.resolve_registry().to_string(),
            dst.resolve_registry().to_string(),
        );
        let client = self.client(&[&src_reg, &dst_reg]);
        let err = |registry: &str| {
            let registry = registry.to_string();
            move |e: oci_client::errors::OciDistributionError| RegistryError::Registry {
                registry: registry.clone(),
                message: e.to_string(),
            }
        };
        client
            .auth(&src, &self.auth(&src_reg), RegistryOperation::Pull)
            .await
            .map_err(err(&src_reg))?;
        client
            .auth(&dst, &self.auth(&dst_reg), RegistryOperation::Push)
            .await
            .map_err(err(&dst_reg))?;
        self.copy_manifest(&client, &src, &dst, &expected, &src_reg, &dst_reg)
            .await?;
        let found = client
            .fetch_manifest_digest(&dst, &self.auth(&dst_reg))
            .await
            .map_err(err(&dst_reg))?;
        if found != expected {
            return Err(RegistryError::DigestMismatch {
                source_ref: source.into(),
                target: target.into(),
                expected,
                found,
            });
        }
        Ok(found)
    }

    /// One manifest (and, for an index, the manifests it lists) with its
    /// blobs, pushed under `dst`'s tag (or digest).
    async fn copy_manifest(
        &self,
        client: &Client,
        src: &Reference,
        dst: &Reference,
        digest: &str,
        src_reg: &str,
        dst_reg: &str,
    ) -> Result<(), RegistryError> {
        let at_digest = src.clone_with_digest(digest.to_string());
        let (bytes, _) = client
            .pull_manifest_raw(&at_digest, &self.auth(src_reg), MANIFEST_TYPES)
            .await
            .map_err(|e| RegistryError::Registry {
                registry: src_reg.into(),
                message: e.to_string(),
            })?;
        let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                source_ref: at_digest.whole(),
                target: at_digest.whole(),
                expected: digest.into(),
                found: actual,
            });
        }
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Registry {
                registry: src_reg.into(),
                message: format!("unreadable manifest: {e}"),
            })?;
        let media_type = json["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string();
        if let Some(children) = json["manifests"].as_array() {
            for child in children {
                if let Some(d) = child["digest"].as_str() {
                    let dst_child = dst.clone_with_digest(d.to_string());
                    Box::pin(self.copy_manifest(client, src, &dst_child, d, src_reg, dst_reg))
                        .await?;
                }
            }
        } else if src.repository() != dst.repository() || src_reg != dst_reg {
            let blobs = std::iter::once(&json["config"])
                .chain(json["layers"].as_array().into_iter().flatten())
                .filter_map(|b| b["digest"].as_str());
            for blob in blobs {
                self.copy_blob(client, src, dst, blob, src_reg, dst_reg)
                    .await?;
            }
        }
        let reg_err = |e: oci_client::errors::OciDistributionError| RegistryError::Registry {
            registry: dst_reg.into(),
            message: e.to_string(),
        };
        let content_type = media_type.parse().map_err(|_| RegistryError::Registry {
            registry: src_reg.into(),
            message: format!("unusable media type `{media_type}`"),
        })?;
        client
            .push_manifest_raw(dst, bytes, content_type)
            .await
            .map_err(reg_err)?;
        Ok(())
    }

    /// A blob into `dst`'s repository: mounted from the source repository
    /// on the same registry (a blob already there mounts too), else copied
    /// across registries.
    async fn copy_blob(
        &self,
        client: &Client,
        src: &Reference,
        dst: &Reference,
        digest: &str,
        src_reg: &str,
        dst_reg: &str,
    ) -> Result<(), RegistryError> {
        let reg_err = |registry: &str| {
            let registry = registry.to_string();
            move |e: oci_client::errors::OciDistributionError| RegistryError::Registry {
                registry: registry.clone(),
                message: e.to_string(),
            }
        };
        if src_reg == dst_reg && client.mount_blob(dst, src, digest).await.is_ok() {
            return Ok(());
        }
        let mut data = Vec::new();
        client
            .pull_blob(src, digest, &mut data)
            .await
            .map_err(reg_err(src_reg))?;
        client
            .push_blob(dst, &data, digest)
            .await
            .map_err(reg_err(dst_reg))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(!is_loopback("registry.example.com"));
    }
}
