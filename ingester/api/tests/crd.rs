//! The generated CRDs in `crds/` and in the Helm chart's `crds/` match the Rust types, and every field is documented for `kubectl explain`.

use std::path::{Path, PathBuf};

use kinesis_ingester_api::{CRD_FILE_NAME, all_crds};

/// Every directory that holds a copy of the generated CRDs, relative to the workspace root: the
/// files users apply, and the Helm chart's (`make crds` writes both).
const CRD_DIRS: [&str; 2] = ["crds", "charts/kinesis-operator/crds"];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The unified diffs of every file in `base` that differs from the generated CRDs (all of them
/// rewritten instead when `update`); `dir` names `base` in the messages.
fn stale_files(base: &Path, dir: &str, update: bool) -> Vec<String> {
    let mut stale = Vec::new();
    for (file, want) in all_crds() {
        let path = base.join(&file);
        if update {
            std::fs::create_dir_all(base).expect("create the CRD directory");
            std::fs::write(&path, &want).expect("write the CRD");
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            let diff = similar::TextDiff::from_lines(&have, &want)
                .unified_diff()
                .context_radius(2)
                .header(
                    &format!("{dir}/ (committed)"),
                    "generated from ingester/api/src",
                )
                .to_string();
            let shown: String = diff.lines().take(60).collect::<Vec<_>>().join("\n");
            stale.push(format!("{dir}/{file}:\n{shown}"));
        }
    }
    stale
}

#[test]
fn crds_dirs_are_up_to_date() {
    let update = std::env::var_os("UPDATE_CRDS").is_some();
    let stale: Vec<String> = CRD_DIRS
        .iter()
        .flat_map(|dir| stale_files(&workspace_root().join(dir), dir, update))
        .collect();
    assert!(
        stale.is_empty(),
        "{} is stale: the Rust types in ingester/api/src changed.\n\
         Regenerate with `make crds` (or `UPDATE_CRDS=1 cargo test -p kinesis-ingester-api --test crd`) \
         and commit the result.\n\n{}",
        CRD_DIRS.join(" or "),
        stale.join("\n\n")
    );
    assert!(
        all_crds()[0].0 == CRD_FILE_NAME,
        "the KinesisIngester CRD keeps its file name"
    );
}

#[test]
fn a_stale_copy_is_reported_with_its_directory() {
    // One file edited, the others missing: all must be reported, under the directory's name.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crd-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let (file, want) = &all_crds()[0];
    std::fs::write(
        dir.join(file),
        want.replace("kind: KinesisIngester", "kind: KinesisIngestor"),
    )
    .expect("write a stale copy");
    let stale = stale_files(&dir, "charts/x/crds", false);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        stale.len(),
        all_crds().len(),
        "every file is stale or missing: {stale:#?}"
    );
    assert!(
        stale[0].starts_with(&format!("charts/x/crds/{file}:")),
        "{}",
        stale[0]
    );
    assert!(stale[0].contains("KinesisIngestor"), "{}", stale[0]);
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
