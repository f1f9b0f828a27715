//! Compiles ALE 0.12.1 (the version whose ROMs ale-py 0.12.1 ships) from its C++ sources with `cc`,
//! plus the C shim in `shim/`. The sources come from the ale-py sdist, unpacked by
//! `scripts/setup.sh` into `.deps/ale-0.12.1/src`; `ALE_SRC_DIR` points at that `src` folder
//! (set in the generated `.cargo/config.toml`). SDL and the vectorised C++ env are left out.

use std::{env, fs, path::{Path, PathBuf}};

const ALE_VERSION: &str = "0.12.1";
const SOURCE_DIRS: [&str; 5] = ["common", "emucore", "environment", "games", "games/supported"];

fn main() {
    println!("cargo:rerun-if-env-changed=ALE_SRC_DIR");
    println!("cargo:rerun-if-changed=shim/ale_shim.cpp");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = env::var_os("ALE_SRC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../.deps/ale-0.12.1/src"));
    let ale = src.join("ale");
    if !ale.join("ale_interface.cpp").exists() {
        panic!(
            "ALE {ALE_VERSION} sources not found in {}: run `make setup` (scripts/setup.sh) first, \
             or set ALE_SRC_DIR to the `src` folder of the ale-py {ALE_VERSION} sdist",
            src.display()
        );
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    write_version_header(&ale, &out);

    let mut files = vec![ale.join("ale_interface.cpp"), manifest.join("shim/ale_shim.cpp")];
    for dir in SOURCE_DIRS {
        files.extend(cpp_files(&ale.join(dir)));
    }
    files.sort();

    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .pic(true)
        .opt_level(3)
        .warnings(false)
        .include(&src)
        .include(&out)
        .define("NDEBUG", None)
        .files(&files)
        .compile("ale");
    println!("cargo:rustc-link-lib=z");
    println!("cargo:rustc-link-lib=pthread");
}

fn cpp_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let is_source = matches!(path.extension().and_then(|e| e.to_str()), Some("cpp" | "cxx"));
        if is_source {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files
}

/// ALE's CMake configures `version.hpp` from `version.hpp.in`; do the same substitution here.
fn write_version_header(ale: &Path, out: &Path) {
    let template = fs::read_to_string(ale.join("version.hpp.in")).expect("version.hpp.in");
    let mut parts = ALE_VERSION.split('.');
    let header = template
        .replace("@ALE_VERSION@", ALE_VERSION)
        .replace("@ALE_VERSION_MAJOR@", parts.next().unwrap())
        .replace("@ALE_VERSION_MINOR@", parts.next().unwrap())
        .replace("@ALE_VERSION_PATCH@", parts.next().unwrap())
        .replace("@ALE_VERSION_GIT_SHA@", "sdist");
    fs::create_dir_all(out.join("ale")).unwrap();
    fs::write(out.join("ale/version.hpp"), &header).unwrap();
    fs::write(out.join("version.hpp"), header).unwrap();
}
