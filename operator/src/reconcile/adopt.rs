//! Refusal to adopt: the worker ServiceAccount, Role, RoleBinding and StatefulSet are applied only when absent or already this ingester's; a same-named object that someone else made is reported (`Ready=False`, reason `ForeignObject`) and never touched, so garbage collection never deletes it with the ingester either.

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::ServiceAccount,
        rbac::v1::{Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kinesis_ingester_api::INGESTER_LABEL;
use kube::{Api, Resource};

use super::{ssa, status::StreamProblem, workload, workload::Names};
use crate::{
    context::Context,
    error::{Result, kube as kerr},
};

/// Condition reason of a same-named object this ingester did not make.
pub const FOREIGN_OBJECT: &str = "ForeignObject";

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Whether an existing object is this ingester's: it has an owner reference to the ingester's
/// uid, or our managed-by label with this ingester's label (made for an earlier ingester of the
/// same name, e.g. before a `Retain` re-creation).
pub fn is_ours(meta: &ObjectMeta, uid: &str, ingester: &str) -> bool {
    let owned = meta.owner_references.iter().flatten().any(|o| o.uid == uid);
    let labels = meta.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    owned
        || (label(MANAGED_BY) == Some("kinesis-operator")
            && label(INGESTER_LABEL) == Some(ingester))
}

/// The problem for a foreign `kind`/`name`.
pub fn problem(kind: &str, name: &str) -> StreamProblem {
    StreamProblem {
        reason: FOREIGN_OBJECT,
        message: format!(
            "{kind} {name} already exists and is not this ingester's (no owner reference to it, no app.kubernetes.io/managed-by=kinesis-operator label for it); the operator leaves it alone and runs no workers: delete or rename it, or rename the ingester"
        ),
    }
}

async fn check<K>(api: &Api<K>, name: &str, uid: &str, ingester: &str) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let existing = api
        .get_opt(name)
        .await
        .map_err(kerr("reading an object before applying it"))?;
    Ok(existing.is_none_or(|o| is_ours(o.meta(), uid, ingester)))
}

/// Applies the worker objects when none of them is foreign; otherwise applies nothing and
/// returns the first foreign one as a problem.
pub async fn apply(
    ki: &kinesis_ingester_api::KinesisIngester,
    ctx: &Context,
    names: &Names,
    owner: &OwnerReference,
    sts: &StatefulSet,
) -> Result<Option<StreamProblem>> {
    let client = &ctx.client;
    let ns = &names.namespace;
    let (uid, ingester) = (owner.uid.as_str(), names.ingester.as_str());
    let sa_api = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let role_api = Api::<Role>::namespaced(client.clone(), ns);
    let binding_api = Api::<RoleBinding>::namespaced(client.clone(), ns);
    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let sa = workload::service_account(names, owner);
    if sa.is_some() && !check(&sa_api, &names.service_account, uid, ingester).await? {
        return Ok(Some(problem("ServiceAccount", &names.service_account)));
    }
    let w = &names.workload;
    if !check(&role_api, w, uid, ingester).await? {
        return Ok(Some(problem("Role", w)));
    }
    if !check(&binding_api, w, uid, ingester).await? {
        return Ok(Some(problem("RoleBinding", w)));
    }
    if !check(&sts_api, w, uid, ingester).await? {
        return Ok(Some(problem("StatefulSet", w)));
    }
    if let Some(sa) = sa {
        ssa(ki, &sa_api, &sa, ctx, "serviceaccount").await?;
    }
    ssa(ki, &role_api, &workload::role(names, owner), ctx, "role").await?;
    let binding = workload::role_binding(names, owner);
    ssa(ki, &binding_api, &binding, ctx, "rolebinding").await?;
    ssa(ki, &sts_api, sts, ctx, "statefulset").await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner_uid: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    ..OwnerReference::default()
                }]
            }),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_an_owner_reference_or_our_labels_for_this_ingester_make_an_object_ours() {
        let ours = [(MANAGED_BY, "kinesis-operator"), (INGESTER_LABEL, "orders")];
        assert!(is_ours(&meta(Some("u1"), &[]), "u1", "orders"));
        assert!(is_ours(&meta(None, &ours), "u1", "orders"));
        // Someone's own ServiceAccount, or one owned by something else.
        assert!(!is_ours(&meta(None, &[]), "u1", "orders"));
        assert!(!is_ours(&meta(Some("u2"), &[]), "u1", "orders"));
        assert!(!is_ours(
            &meta(None, &[(MANAGED_BY, "helm")]),
            "u1",
            "orders"
        ));
        // Our label, but for another ingester.
        let other = [
            (MANAGED_BY, "kinesis-operator"),
            (INGESTER_LABEL, "payments"),
        ];
        assert!(!is_ours(&meta(None, &other), "u1", "orders"));
        let p = problem("ServiceAccount", "orders-worker");
        assert_eq!(p.reason, "ForeignObject");
        assert!(
            p.message
                .starts_with("ServiceAccount orders-worker already exists")
        );
    }
}
