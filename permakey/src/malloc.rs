//! The C allocator's settings for tensor work: every binary calls [`configure_from_env`] first.
//!
//! libtorch takes its CPU tensors from the process's C allocator (glibc malloc on Linux). By
//! default glibc serves a block above its mmap threshold (128 KiB at start, raised dynamically up
//! to 32 MiB as large blocks are freed) with a fresh `mmap` and returns it to the kernel on `free`,
//! and it gives the top of the heap back once more than the trim threshold (twice the mmap
//! threshold) is free there. A learner update allocates and frees the same few tens of megabytes
//! of activations and gradients every time, so with the defaults much of it is page-faulted and
//! zeroed again on each update; how much depends on what ran before (the dynamic threshold), which
//! is also why the feature cache made the CNN encoder's phases slower: without the front end's
//! large convolutions the threshold stayed low. Issue 11's profile measured this with
//! `cargo bench -p trainer --bench feature_cache` (side by side, one child process per setting):
//! figures in BENCHMARKS.md.
//!
//! [`MallocMode::Keep`] (the default) sets the mmap threshold to [`KEEP_MMAP_THRESHOLD`] (glibc's
//! own ceiling for the dynamic one, so it holds from the first update) and the trim threshold to
//! [`KEEP_TRIM_THRESHOLD`]: freed activations stay in the heap for the next update. The price is
//! resident memory: up to the trim threshold of free heap is kept instead of returned.
//! `PERMAKEY_MALLOC=system` leaves glibc's defaults; a `GLIBC_TUNABLES` that sets a `glibc.malloc.`
//! tunable also wins (it was applied before `main`). Other C libraries: nothing is changed.

use std::{fmt, str::FromStr};

/// The environment variable that chooses the [`MallocMode`] (`keep` or `system`).
pub const MALLOC_ENV: &str = "PERMAKEY_MALLOC";
/// [`MallocMode::Keep`]'s mmap threshold: blocks up to this size come from the heap.
pub const KEEP_MMAP_THRESHOLD: usize = 32 << 20;
/// [`MallocMode::Keep`]'s trim threshold: free memory at the heap's top kept for reuse.
pub const KEEP_TRIM_THRESHOLD: usize = 256 << 20;

/// How the process's C allocator is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MallocMode {
    /// Fixed thresholds that keep an update's freed memory for the next one.
    #[default]
    Keep,
    /// The C library's defaults, untouched.
    System,
}

impl FromStr for MallocMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "keep" | "" => Ok(Self::Keep),
            "system" => Ok(Self::System),
            _ => Err(format!("{MALLOC_ENV}='{text}' is not a malloc mode: expected keep or system")),
        }
    }
}

impl fmt::Display for MallocMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Keep => "keep",
            Self::System => "system",
        })
    }
}

/// What [`configure_from_env`] did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocSetup {
    /// [`MallocMode::Keep`]'s thresholds are in force.
    Keep,
    /// Nothing was changed: `PERMAKEY_MALLOC=system`, malloc tunables in `GLIBC_TUNABLES`, or a C
    /// library other than glibc.
    Unchanged(&'static str),
}

impl fmt::Display for MallocSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keep => write!(f, "malloc keep (mmap threshold {} MiB, trim threshold {} MiB)", KEEP_MMAP_THRESHOLD >> 20, KEEP_TRIM_THRESHOLD >> 20),
            Self::Unchanged(why) => write!(f, "malloc unchanged ({why})"),
        }
    }
}

/// Applies `mode`. An error only when the C library refuses a setting.
pub fn apply(mode: MallocMode) -> Result<MallocSetup, String> {
    match mode {
        MallocMode::System => Ok(MallocSetup::Unchanged("PERMAKEY_MALLOC=system")),
        MallocMode::Keep => keep(),
    }
}

/// Reads [`MALLOC_ENV`] and applies it (see the module docs); an error names the bad value.
pub fn configure_from_env() -> Result<MallocSetup, String> {
    let mode: MallocMode = match std::env::var(MALLOC_ENV) {
        Ok(text) => text.parse()?,
        Err(std::env::VarError::NotPresent) => MallocMode::default(),
        Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{MALLOC_ENV} is not valid UTF-8: expected keep or system")),
    };
    if mode == MallocMode::Keep && std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return Ok(MallocSetup::Unchanged("GLIBC_TUNABLES sets malloc"));
    }
    apply(mode)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep() -> Result<MallocSetup, String> {
    for (name, param, value) in [("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD), ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)] {
        let value = libc::c_int::try_from(value).map_err(|_| format!("{name} {value} does not fit a C int"))?;
        // SAFETY: mallopt only sets allocator parameters; any value is defined behaviour (glibc
        // answers 0 for one it refuses).
        if unsafe { libc::mallopt(param, value) } != 1 {
            return Err(format!("glibc refused mallopt({name}, {value})"));
        }
    }
    Ok(MallocSetup::Keep)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep() -> Result<MallocSetup, String> {
    Ok(MallocSetup::Unchanged("not glibc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_name_the_variable() {
        assert_eq!("keep".parse::<MallocMode>(), Ok(MallocMode::Keep));
        assert_eq!(" System ".parse::<MallocMode>(), Ok(MallocMode::System));
        assert_eq!("".parse::<MallocMode>(), Ok(MallocMode::Keep));
        let error = "jemalloc".parse::<MallocMode>().unwrap_err();
        assert!(error.starts_with("PERMAKEY_MALLOC='jemalloc'") && !error.contains('\n'), "{error}");
    }

    #[test]
    fn keep_is_accepted_by_this_c_library() {
        let setup = apply(MallocMode::Keep).unwrap();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(setup, MallocSetup::Keep);
        }
        assert_eq!(apply(MallocMode::System), Ok(MallocSetup::Unchanged("PERMAKEY_MALLOC=system")));
    }
}
