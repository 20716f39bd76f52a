//! What the API sends for promotions, environments, the audit log and
//! previews: wire types of their own, converted from the store's records at
//! this edge, so the stored layout can change without changing the API
//! (and the other way round). Their JSON is what the API has always sent;
//! a test below pins it against the records'.

use serde::Serialize;

use crate::store::{AuditEntry, Decision, EnvState, PreviewRecord, Promotion, PromotionStatus};

#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    pub user: String,
    pub comment: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromotionView {
    pub id: String,
    pub repo: String,
    pub environment: String,
    pub from: Option<String>,
    pub digest: String,
    pub source: String,
    pub run: Option<String>,
    pub sha: Option<String>,
    pub author: Option<String>,
    pub requested_by: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub status: PromotionStatus,
    pub approvals: Vec<DecisionView>,
    pub rejection: Option<DecisionView>,
    pub error: Option<String>,
    pub finished_ms: Option<u64>,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvStateView {
    pub digest: String,
    pub image: String,
    pub run: Option<String>,
    pub sha: Option<String>,
    pub promotion: String,
    pub promoted_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntryView {
    pub seq: u64,
    pub at_ms: u64,
    pub user: String,
    pub action: String,
    pub repo: String,
    pub environment: String,
    pub promotion: String,
    pub digest: String,
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreviewView {
    pub repo: String,
    pub number: u64,
    pub sha: String,
    pub run: String,
    pub image: String,
    pub container: String,
    pub network: String,
    pub ip: String,
    pub port: u16,
    pub url: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub comment_id: Option<u64>,
    pub deployment_id: Option<u64>,
}

impl From<Decision> for DecisionView {
    fn from(d: Decision) -> DecisionView {
        let Decision {
            user,
            comment,
            at_ms,
        } = d;
        DecisionView {
            user,
            comment,
            at_ms,
        }
    }
}

impl From<Promotion> for PromotionView {
    fn from(p: Promotion) -> PromotionView {
        PromotionView {
            id: p.id,
            repo: p.repo,
            environment: p.environment,
            from: p.from,
            digest: p.digest,
            source: p.source,
            run: p.run,
            sha: p.sha,
            author: p.author,
            requested_by: p.requested_by,
            created_ms: p.created_ms,
            expires_ms: p.expires_ms,
            status: p.status,
            approvals: p.approvals.into_iter().map(Into::into).collect(),
            rejection: p.rejection.map(Into::into),
            error: p.error,
            finished_ms: p.finished_ms,
            attempts: p.attempts,
        }
    }
}

impl From<EnvState> for EnvStateView {
    fn from(e: EnvState) -> EnvStateView {
        EnvStateView {
            digest: e.digest,
            image: e.image,
            run: e.run,
            sha: e.sha,
            promotion: e.promotion,
            promoted_ms: e.promoted_ms,
        }
    }
}

impl From<AuditEntry> for AuditEntryView {
    fn from(a: AuditEntry) -> AuditEntryView {
        AuditEntryView {
            seq: a.seq,
            at_ms: a.at_ms,
            user: a.user,
            action: a.action,
            repo: a.repo,
            environment: a.environment,
            promotion: a.promotion,
            digest: a.digest,
            comment: a.comment,
            secret: a.secret,
        }
    }
}

impl From<PreviewRecord> for PreviewView {
    fn from(p: PreviewRecord) -> PreviewView {
        PreviewView {
            repo: p.repo,
            number: p.number,
            sha: p.sha,
            run: p.run,
            image: p.image,
            container: p.container,
            network: p.network,
            ip: p.ip,
            port: p.port,
            url: p.url,
            created_ms: p.created_ms,
            updated_ms: p.updated_ms,
            comment_id: p.comment_id,
            deployment_id: p.deployment_id,
        }
    }
}

/// Each of a list, as its view.
pub fn views<R, V: From<R>>(records: Vec<R>) -> Vec<V> {
    records.into_iter().map(V::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's JSON did not change when its types left the store.
    #[test]
    fn views_send_what_the_records_sent() {
        let mut p = Promotion::pending_for_test("p1", "acme/web", "staging", "sha256:aa");
        p.approvals.push(Decision {
            user: "alice".into(),
            comment: Some("ok".into()),
            at_ms: 5,
        });
        p.rejection = Some(Decision {
            user: "bob".into(),
            comment: None,
            at_ms: 6,
        });
        let same = |record: serde_json::Value, view: serde_json::Value| assert_eq!(record, view);
        same(
            serde_json::to_value(&p).unwrap(),
            serde_json::to_value(PromotionView::from(p.clone())).unwrap(),
        );
        let state = EnvState {
            digest: "sha256:aa".into(),
            image: "r/acme/web@sha256:aa".into(),
            run: Some("r1".into()),
            sha: None,
            promotion: "p1".into(),
            promoted_ms: 7,
        };
        same(
            serde_json::to_value(&state).unwrap(),
            serde_json::to_value(EnvStateView::from(state.clone())).unwrap(),
        );
        let entry = AuditEntry {
            seq: 3,
            at_ms: 8,
            user: "alice".into(),
            action: "approved".into(),
            repo: "acme/web".into(),
            environment: "staging".into(),
            promotion: "p1".into(),
            digest: "sha256:aa".into(),
            comment: Some("lgtm".into()),
            secret: None,
        };
        same(
            serde_json::to_value(&entry).unwrap(),
            serde_json::to_value(AuditEntryView::from(entry.clone())).unwrap(),
        );
        let preview = PreviewRecord {
            repo: "acme/web".into(),
            number: 2,
            sha: "abc".into(),
            run: "r1".into(),
            image: "r/acme/web@sha256:aa".into(),
            container: "c".into(),
            network: "n".into(),
            ip: "10.0.0.2".into(),
            port: 8080,
            url: "http://pr-2.preview.localhost".into(),
            created_ms: 1,
            updated_ms: 2,
            comment_id: Some(9),
            deployment_id: None,
        };
        same(
            serde_json::to_value(&preview).unwrap(),
            serde_json::to_value(PreviewView::from(preview.clone())).unwrap(),
        );
    }
}
