//! Prints the CRDs of the `nodehealer.io` API, generated from the Rust types in `src/api`.
//!
//! - `crdgen` writes every CRD to stdout as one multi-document YAML stream (for `kubectl apply -f -`).
//! - `crdgen --out-dir crds` writes each CRD to `crds/<crd name>.yaml` and removes nothing else;
//!   this is what `make generate` runs, and `tests/crds.rs` fails when those files are stale.

use std::{path::PathBuf, process::ExitCode};

use nodehealer::api::{crd_yaml, crds};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let documents: Vec<String> = crds().iter().map(crd_yaml).collect();
            print!("{}", documents.join("---\n"));
            ExitCode::SUCCESS
        }
        [flag, dir] if flag == "--out-dir" => {
            let dir = PathBuf::from(dir);
            if let Err(err) = std::fs::create_dir_all(&dir) {
                eprintln!("crdgen: cannot create {}: {err}", dir.display());
                return ExitCode::FAILURE;
            }
            for crd in crds() {
                let name = crd.metadata.name.clone().expect("generated CRDs are named");
                let path = dir.join(format!("{name}.yaml"));
                if let Err(err) = std::fs::write(&path, crd_yaml(&crd)) {
                    eprintln!("crdgen: cannot write {}: {err}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("crdgen: wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: crdgen [--out-dir DIR]");
            ExitCode::from(2)
        }
    }
}
