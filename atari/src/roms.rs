//! ROM lookup by game id, checked against the md5 list that ale-py 0.12.1 ships with its ROMs.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use md5::{Digest, Md5};

use crate::{AtariError, Result};

/// Environment variable that points at a ROM folder (the `ale_py/roms` folder of ale-py 0.12.1).
pub const ROM_DIR_ENV: &str = "PERMAKEY_ROM_DIR";

/// A ROM file whose md5 matched the ale-py list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rom {
    /// Canonical game id: the ROM's file stem, e.g. `ms_pacman`.
    pub id: String,
    pub path: PathBuf,
    pub md5: String,
}

/// The ROMs of one folder, indexed by game id.
#[derive(Debug, Clone)]
pub struct RomCatalog {
    dir: PathBuf,
    /// game id -> expected md5
    md5_by_id: BTreeMap<String, String>,
}

/// Normalises user spellings of a game: `MsPacman`, `ms_pacman`, `MsPacmanNoFrameskip-v4`,
/// `ALE/MsPacman-v5` all become `mspacman`.
pub fn normalise_game_name(name: &str) -> String {
    let mut lower = name.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("ale/") {
        lower = rest.to_owned();
    }
    for suffix in ["noframeskip-v4", "noframeskip-v0", "deterministic-v4", "-v5", "-v4", "-v0"] {
        if let Some(rest) = lower.strip_suffix(suffix) {
            lower = rest.to_owned();
            break;
        }
    }
    lower.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

impl RomCatalog {
    /// The ROM folder named by `PERMAKEY_ROM_DIR` at run time, else the one `make setup`
    /// installed for this checkout (recorded at build time).
    pub fn discover() -> Result<Self> {
        let dir = std::env::var_os(ROM_DIR_ENV)
            .map(PathBuf::from)
            .or_else(|| option_env!("PERMAKEY_ROM_DIR").map(PathBuf::from))
            .ok_or_else(|| AtariError::RomDir {
                dir: PathBuf::from("<unset>"),
                reason: format!("{ROM_DIR_ENV} is not set and this binary was built without it"),
            })?;
        Self::open(&dir)
    }

    /// Reads `md5.json` of `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let list = dir.join("md5.json");
        let text = fs::read_to_string(&list).map_err(|e| AtariError::RomDir {
            dir: dir.to_owned(),
            reason: format!("cannot read md5.json ({e})"),
        })?;
        let by_file: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| AtariError::RomDir {
            dir: dir.to_owned(),
            reason: format!("md5.json is not a file-name -> md5 map ({e})"),
        })?;
        let md5_by_id = by_file
            .into_iter()
            .filter_map(|(file, md5)| file.strip_suffix(".bin").map(|id| (id.to_owned(), md5.to_ascii_lowercase())))
            .collect::<BTreeMap<_, _>>();
        if md5_by_id.is_empty() {
            return Err(AtariError::RomDir { dir: dir.to_owned(), reason: "md5.json lists no ROMs".into() });
        }
        Ok(Self { dir: dir.to_owned(), md5_by_id })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Canonical ids of every game in the catalogue, sorted.
    pub fn game_ids(&self) -> impl Iterator<Item = &str> {
        self.md5_by_id.keys().map(String::as_str)
    }

    /// The canonical id for a user spelling, or an error listing the known ids.
    pub fn canonical_id(&self, name: &str) -> Result<String> {
        let wanted = normalise_game_name(name);
        self.md5_by_id
            .keys()
            .find(|id| normalise_game_name(id) == wanted)
            .cloned()
            .ok_or_else(|| AtariError::UnknownGame {
                name: name.to_owned(),
                known: self.game_ids().collect::<Vec<_>>().join(", "),
            })
    }

    /// Finds the ROM of `name` and checks its md5 (ALE exits the process on an unsupported ROM,
    /// so nothing unverified reaches it).
    pub fn resolve(&self, name: &str) -> Result<Rom> {
        let id = self.canonical_id(name)?;
        let expected = self.md5_by_id[&id].clone();
        let path = self.dir.join(format!("{id}.bin"));
        let bytes = fs::read(&path).map_err(|_| AtariError::MissingRom { game: id.clone(), path: path.clone() })?;
        let actual = format!("{:x}", Md5::digest(&bytes));
        if actual != expected {
            return Err(AtariError::RomChecksum { game: id, path, expected, actual });
        }
        Ok(Rom { id, path, md5: actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_common_spellings() {
        for name in ["MsPacman", "ms_pacman", "MsPacmanNoFrameskip-v4", "ALE/MsPacman-v5", " mspacman "] {
            assert_eq!(normalise_game_name(name), "mspacman", "{name}");
        }
        assert_eq!(normalise_game_name("MontezumaRevenge"), "montezumarevenge");
        assert_eq!(normalise_game_name("montezuma_revenge"), "montezumarevenge");
    }

    #[test]
    fn unusable_folder_is_a_clear_error() {
        let err = RomCatalog::open(Path::new("/nonexistent/roms")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/roms") && err.contains("make setup"), "{err}");
    }

    #[test]
    fn checksum_mismatch_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("md5.json"), r#"{"pong.bin": "00000000000000000000000000000000"}"#).unwrap();
        fs::write(dir.path().join("pong.bin"), b"not a rom").unwrap();
        let catalog = RomCatalog::open(dir.path()).unwrap();
        let err = catalog.resolve("Pong").unwrap_err();
        assert!(matches!(err, AtariError::RomChecksum { .. }), "{err}");
        let err = catalog.resolve("Tetris").unwrap_err().to_string();
        assert_eq!(err, "unknown game 'Tetris'; known ids: pong");
    }
}
