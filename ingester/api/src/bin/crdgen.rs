//! Writes every generated CRD into each directory given (default: `crds`).

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from("crds"));
    }
    let crds = kinesis_ingester_api::all_crds();
    for dir in dirs {
        for (file, yaml) in &crds {
            let path = dir.join(file);
            if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml))
            {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("crdgen: wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
