//! Compiles `csrc/precision.cpp` (libtorch's float32 matmul precision, see `src/precision.rs`) and
//! `csrc/foreach.cpp` (multi-tensor optimiser updates, see `src/foreach.rs`) against the headers of the libtorch that torch-sys links. torch-sys reports its library folder
//! (`DEP_TCH_LIBTORCH_LIB`); both layouts it finds by itself (a libtorch folder, `LIBTORCH`, and a
//! PyTorch install, `LIBTORCH_USE_PYTORCH=1`) keep the headers in `../include` beside it, and
//! `LIBTORCH_INCLUDE` (torch-sys's own override) comes first when set.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/precision.cpp");
    println!("cargo:rerun-if-changed=csrc/foreach.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report DEP_TCH_LIBTORCH_LIB (libtorch's lib folder)");
    let candidates: Vec<PathBuf> = std::env::var("LIBTORCH_INCLUDE")
        .ok()
        .map(|dir| PathBuf::from(dir).join("include"))
        .into_iter()
        .chain([PathBuf::from(&lib).join("..").join("include")])
        .collect();
    let include = candidates
        .iter()
        .find(|dir| dir.join("ATen/Context.h").is_file())
        .unwrap_or_else(|| panic!("libtorch's headers (ATen/Context.h) are in none of {candidates:?}"));
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("csrc/precision.cpp")
        .file("csrc/foreach.cpp")
        .include(include)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .compile("permakey_csrc");
}
