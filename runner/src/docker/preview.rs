//! Preview containers: a pull request's image, running detached on a
//! network of its own, labelled `slipway.preview=<repo>#<number>` so they
//! can always be found (and never mistaken for a run's containers).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{DockerBackend, docker_err, is_status};
use crate::backend::{BackendError, Credentials};

pub const LABEL_PREVIEW: &str = "slipway.preview";
const LABEL_GENERATION: &str = "slipway.preview.generation";
/// Which server owns the preview (several may share one Docker).
const LABEL_SERVER: &str = "slipway.preview.server";

/// One preview container to start.
#[derive(Debug, Clone)]
pub struct PreviewSpec {
    /// `owner/name#number`: the label value.
    pub key: String,
    /// The owning server's id.
    pub server: String,
    /// Names Docker objects: `slipway-preview-<slug>`.
    pub slug: String,
    pub generation: u64,
    /// `repository@sha256:...`
    pub image: String,
    pub env: Vec<(String, String)>,
    pub credentials: Credentials,
}

/// A started preview container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewContainer {
    pub name: String,
    pub network: String,
    /// Its address on its network, reachable from this host.
    pub ip: String,
}

/// A preview container found in Docker.
#[derive(Debug, Clone)]
pub struct FoundPreview {
    pub key: String,
    pub name: String,
    pub generation: u64,
    pub running: bool,
}

impl DockerBackend {
    /// Pulls the image if missing, makes the preview's network if missing,
    /// and starts a new container of this generation on it.
    pub async fn start_preview(
        &self,
        spec: &PreviewSpec,
    ) -> Result<PreviewContainer, BackendError> {
        if let Err(e) = self.docker.inspect_image(&spec.image).await {
            if !is_status(&e, 404) {
                return Err(docker_err(format!("inspect {}", spec.image))(e));
            }
            let registry = super::registry_of(&spec.image);
            let creds = spec
                .credentials
                .get(registry)
                .map(|a| bollard::auth::DockerCredentials {
                    username: Some(a.username.clone()),
                    password: Some(a.password.clone()),
                    serveraddress: Some(registry.to_string()),
                    ..Default::default()
                });
            let opts = CreateImageOptionsBuilder::default()
                .from_image(&spec.image)
                .build();
            let mut pull = self.bulk.create_image(Some(opts), None, creds);
            while let Some(item) = pull.next().await {
                item.map_err(|e| BackendError::ImagePull {
                    image: spec.image.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        let labels = HashMap::from([
            (LABEL_PREVIEW.to_string(), spec.key.clone()),
            (LABEL_GENERATION.to_string(), spec.generation.to_string()),
            (LABEL_SERVER.to_string(), spec.server.clone()),
            (super::LABEL_OWNER.to_string(), self.owner.clone()),
        ]);
        let network = format!("slipway-preview-{}", spec.slug);
        let req = NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([
                (LABEL_PREVIEW.to_string(), spec.key.clone()),
                (LABEL_SERVER.to_string(), spec.server.clone()),
            ])),
            ..Default::default()
        };
        // Docker allows two networks of one name, and then refuses to start
        // a container on either ("ambiguous"), even by id: the preview
        // reuses the one of its name (its own, or one a crash or another
        // server left), and clears duplicates nobody uses.
        let network_id = self.preview_network(&network, req).await?;
        let name = format!("slipway-preview-{}-{}", spec.slug, spec.generation);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(network_id.clone()),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(docker_err(format!("create preview container {name}")))?;
        self.docker
            .start_container(&name, None)
            .await
            .map_err(docker_err(format!("start preview container {name}")))?;
        let ip = self.preview_ip(&name, &network).await?;
        Ok(PreviewContainer { name, network, ip })
    }

    /// The id of the one network named `name`, made from `req` if none is.
    async fn preview_network(
        &self,
        name: &str,
        req: bollard::models::NetworkCreateRequest,
    ) -> Result<String, BackendError> {
        let by_name = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let named = |docker: bollard::Docker| {
            let filter = by_name.clone();
            async move {
                docker
                    .list_networks(Some(
                        ListNetworksOptionsBuilder::default()
                            .filters(&filter)
                            .build(),
                    ))
                    .await
                    .map(|all| {
                        all.into_iter()
                            .filter(|n| n.name.as_deref() == Some(name))
                            .filter_map(|n| n.id)
                            .collect::<Vec<String>>()
                    })
                    .map_err(docker_err("list preview networks"))
            }
        };
        let mut ids = named(self.docker.clone()).await?;
        if ids.len() > 1 {
            // Those in use refuse to go; the unused ones go.
            for id in &ids {
                let _ = self.docker.remove_network(id).await;
            }
            ids = named(self.docker.clone()).await?;
        }
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => self
                .docker
                .create_network(req)
                .await
                .map(|created| created.id)
                .map_err(docker_err("create the preview's network")),
            _ => Err(BackendError::Other(format!(
                "{} networks named {name} are in use; remove all but one (`docker network ls --filter name={name}`)",
                ids.len()
            ))),
        }
    }

    /// The container's address on the network (it changes when Docker
    /// restarts it).
    pub async fn preview_ip(&self, name: &str, network: &str) -> Result<String, BackendError> {
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(docker_err(format!("inspect {name}")))?;
        info.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| BackendError::Other(format!("{name} has no address on {network}")))
    }

    /// Every preview container of this server, running or not.
    pub async fn list_previews(&self, server: &str) -> Result<Vec<FoundPreview>, BackendError> {
        let filter = HashMap::from([(
            "label".to_string(),
            vec![
                LABEL_PREVIEW.to_string(),
                format!("{LABEL_SERVER}={server}"),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filter)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(docker_err("list preview containers"))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                Some(FoundPreview {
                    key: labels.get(LABEL_PREVIEW)?.clone(),
                    generation: labels
                        .get(LABEL_GENERATION)
                        .and_then(|g| g.parse().ok())
                        .unwrap_or(0),
                    name: c.names?.first()?.trim_start_matches('/').to_string(),
                    running: c.state.is_some_and(|s| s.to_string() == "running"),
                })
            })
            .collect())
    }

    pub async fn remove_preview_container(&self, name: &str) {
        self.remove_container(name).await;
    }

    /// Removes the preview's network (once its containers are gone) and
    /// its image.
    pub async fn remove_preview_rest(&self, server: &str, key: &str, image: Option<&str>) {
        let filter = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_PREVIEW}={key}"),
                format!("{LABEL_SERVER}={server}"),
            ],
        )]);
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filter)
            .build();
        if let Ok(networks) = self.docker.list_networks(Some(opts)).await {
            for id in networks.into_iter().filter_map(|n| n.id) {
                let _ = self.docker.remove_network(&id).await;
            }
        }
        // Only the reference the preview pulled (by digest), never forced:
        // the reference comes from a pull request's build, and a forced
        // removal would take the image from whatever else uses it.
        if let Some(image) = image.filter(|i| is_digest_reference(i)) {
            let opts = RemoveImageOptionsBuilder::default().force(false).build();
            let _ = self.docker.remove_image(image, Some(opts), None).await;
        }
    }
}

/// `repository@sha256:<64 hex digits>`: what a preview deploys.
fn is_digest_reference(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(repo, hex)| {
        !repo.is_empty()
            && hex.len() == 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::is_digest_reference;

    #[test]
    fn only_digest_references_are_removed_at_teardown() {
        assert!(is_digest_reference(&format!(
            "127.0.0.1:5000/acme/web@sha256:{}",
            "a".repeat(64)
        )));
        assert!(!is_digest_reference("rust:1"));
        assert!(!is_digest_reference("slipway.test/busybox:1"));
        assert!(!is_digest_reference("acme/web@sha256:short"));
    }
}
