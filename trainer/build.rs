//! Stamps the commit this crate was built from into `trainer::BUILD_COMMIT` (written into every
//! run's final_scores.json and shown by `--version`), so a run's provenance is its binary's, not
//! whatever the checkout says later. `PKRL_BUILD_COMMIT` in the build environment wins (builds
//! without a git checkout); no git and no variable gives "unknown". Uncommitted changes are not
//! detected: the stamp names the commit HEAD pointed at when this crate was last compiled.

use std::{path::PathBuf, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PKRL_BUILD_COMMIT");
    let commit = match std::env::var("PKRL_BUILD_COMMIT") {
        Ok(value) if !value.trim().is_empty() => value.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself (branch switches), the branch's ref (commits)
            // and packed-refs. Only files that exist are named: cargo reruns a script on every
            // build while one of its named files is missing.
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) {
                let mut watched = vec![dir.join("HEAD"), dir.join("packed-refs")];
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watched.push(dir.join(branch));
                }
                for path in watched.into_iter().filter(|path| path.exists()) {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
            git(&["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=PKRL_BUILD_COMMIT={commit}");
}
