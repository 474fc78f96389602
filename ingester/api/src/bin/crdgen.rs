//! Writes the generated KinesisIngester CRD into each directory given (default: `crds`).

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from("crds"));
    }
    let yaml = kinesis_ingester_api::crd_yaml();
    for dir in dirs {
        let path = dir.join(kinesis_ingester_api::CRD_FILE_NAME);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &yaml)) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("crdgen: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
