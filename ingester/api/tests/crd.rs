//! The generated CRD in `crds/` matches the Rust types, and every field is documented for `kubectl explain`.

use std::path::PathBuf;

use kinesis_ingester_api::{CRD_FILE_NAME, all_crds};

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn crds_dir_is_up_to_date() {
    let update = std::env::var_os("UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for (file, want) in all_crds() {
        let path = crds_dir().join(&file);
        if update {
            std::fs::write(&path, &want).expect("write the CRD");
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            let diff = similar::TextDiff::from_lines(&have, &want)
                .unified_diff()
                .context_radius(2)
                .header("crds/ (committed)", "generated from ingester/api/src")
                .to_string();
            let shown: String = diff.lines().take(60).collect::<Vec<_>>().join("\n");
            stale.push(format!("crds/{file}:\n{shown}"));
        }
    }
    assert!(
        stale.is_empty(),
        "crds/ is stale: the Rust types in ingester/api/src changed.\n\
         Regenerate it with `make crds` (or `UPDATE_CRDS=1 cargo test -p kinesis-ingester-api --test crd`) \
         and commit the result.\n\n{}",
        stale.join("\n\n")
    );
    assert!(
        all_crds()[0].0 == CRD_FILE_NAME,
        "the KinesisIngester CRD keeps its file name"
    );
}

/// Walks the schema and collects the path of every property without a description.
fn undocumented(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            if prop.get("description").is_none() {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description() {
    use kube::CustomResourceExt;
    let mut missing = Vec::new();
    for crd in [
        kinesis_ingester_api::KinesisIngester::crd(),
        kinesis_ingester_api::KinesisShardAssignment::crd(),
        kinesis_ingester_api::KinesisWorker::crd(),
    ] {
        let kind = crd.spec.names.kind.clone();
        let crd = serde_json::to_value(crd).expect("CRD serializes");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for top in ["spec", "status"] {
            undocumented(
                &schema["properties"][top],
                &format!("{kind}.{top}"),
                &mut missing,
            );
        }
    }
    assert!(
        missing.is_empty(),
        "these fields have no doc comment, so `kubectl explain` shows nothing for them: {missing:#?}"
    );
}
