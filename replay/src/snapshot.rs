//! Binary snapshots of a [`SequenceReplay`], written atomically.
//!
//! # Format (version 2, all integers and floats little-endian)
//!
//! A 32-byte header:
//!
//! | bytes  | field                                               |
//! |--------|-----------------------------------------------------|
//! | 0..8   | magic `PKRLRPLY`                                    |
//! | 8..12  | format version, `u32` = 2                           |
//! | 12..16 | reserved, zero                                      |
//! | 16..24 | payload length in bytes, `u64`                      |
//! | 24..28 | CRC-32 (IEEE) of the payload, `u32`                 |
//! | 28..32 | CRC-32 of header bytes 0..28, `u32`                 |
//!
//! then the payload:
//! - config: capacity `u64`, sampling mode `u8` (0 uniform, 1 prioritised), alpha `f64`,
//!   beta `f64`, initial max priority `f64`;
//! - counters: inserts, evictions, samples, priority updates, stale priority updates (`u64`
//!   each), max priority `f64`;
//! - item count `u64`, then per stored item in slot order: generation `u64`, priority `f64`,
//!   env id `u32`, run id `u64`, parameter version `u64`, observation shape `3 x u32`, steps
//!   `u32`, burn-in `u16`, padded steps `u16`, truncated `u8`, state length `u32`, keypoint dims
//!   `u16`, actions (`steps x u16`), rewards (`steps x f32`), dones (`steps x u8`), initial
//!   recurrent state (`len x f32`), keypoints (`steps x keypoint dims x f32`), observation bytes
//!   (`steps x h x w x c`).
//!
//! # Versions
//!
//! - **2** (written by this build): adds the per-step keypoints of [`Sequence::keypoints`]
//!   (the keypoint dims `u16` after the state length, the keypoint floats after the recurrent
//!   state).
//! - **1**: the same layout without the keypoint dims and keypoint floats. Still read, since
//!   that costs one branch per item: its sequences load with no keypoints (`keypoints` empty,
//!   `keypoint_dims` 0). Saving always writes version 2.
//!
//! Any other version fails with [`ReplayError::SnapshotVersion`], which names the version found
//! and the range this build reads ([`SNAPSHOT_OLDEST_READABLE_VERSION`] to
//! [`SNAPSHOT_VERSION`]).
//!
//! # Atomicity
//!
//! A snapshot is written to `.<name>.tmp` beside the target, fsynced, renamed over the target,
//! and the directory is fsynced. A crash at any point leaves either the previous snapshot or the
//! new one under the target name, never a mix; a leftover temporary file is overwritten by the
//! next save and never read. Loading checks the magic, both checksums, the exact length and every
//! decoded value (each item is [`Sequence::validate`]d) before returning a table, and reports a
//! checksum mismatch in preference to any decoding error it caused.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    ReplayConfig, ReplayError, SamplingMode, Sequence, SequenceReplay, SumTree,
    priority::priority_mass,
    table::{Counters, Slot},
};

/// First eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PKRLRPLY";
/// Format version this build writes, and the newest it reads.
pub const SNAPSHOT_VERSION: u32 = 2;
/// Oldest format version this build still reads (version 1 snapshots load without keypoints).
pub const SNAPSHOT_OLDEST_READABLE_VERSION: u32 = 1;
/// First version whose items store keypoints.
const KEYPOINTS_SINCE_VERSION: u32 = 2;
const HEADER_LEN: u64 = 32;
/// Fewest payload bytes one item can take (version 1, no steps, no state): generation, priority,
/// env id, run id, parameter version, shape, steps, burn-in, padded steps, truncated, state length.
const MIN_ITEM_BYTES: u64 = 8 + 8 + 4 + 8 + 8 + 12 + 4 + 2 + 2 + 1 + 4;

impl SequenceReplay {
    /// Writes the whole table (items, priorities, counters, config) to `path` atomically.
    ///
    /// On error the file at `path`, if any, is untouched and the temporary file is removed.
    pub fn save_snapshot(&self, path: impl AsRef<Path>) -> Result<(), ReplayError> {
        let path = path.as_ref();
        write_atomically(path, |file| write_snapshot(self, file)).map_err(|source| {
            ReplayError::SnapshotIo {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Reads a table written by [`SequenceReplay::save_snapshot`], with its config and counters.
    ///
    /// Reads format versions [`SNAPSHOT_OLDEST_READABLE_VERSION`] to [`SNAPSHOT_VERSION`]; the
    /// sequences of a version 1 snapshot come back without keypoints.
    ///
    /// Fails with [`ReplayError::SnapshotCorrupt`] on a bad magic, checksum or length, or any
    /// invalid value, and with [`ReplayError::SnapshotVersion`] on an unknown format version.
    pub fn load_snapshot(path: impl AsRef<Path>) -> Result<Self, ReplayError> {
        let path = path.as_ref();
        read_snapshot(path).map_err(|error| error.at(path))
    }
}

impl SequenceReplay {
    /// [`SequenceReplay::load_snapshot`] from bytes in memory (`what` names them in errors).
    pub fn load_snapshot_bytes(bytes: &[u8], what: impl AsRef<Path>) -> Result<Self, ReplayError> {
        read_snapshot_from(bytes, bytes.len() as u64).map_err(|error| error.at(what.as_ref()))
    }
}

/// Creates `.<file name>.tmp` beside `path`, lets `write` fill it, fsyncs it, renames it over
/// `path` and fsyncs the directory. Removes the temporary file on any error.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "snapshot path has no file name",
        )
    })?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(".tmp");
    let temporary = directory.join(temporary_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        sync_directory(&directory)
    })();
    if result.is_err() {
        // Best effort: the temporary may not exist (open failed) or may be gone (renamed).
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> io::Result<()> {
    Ok(())
}

/// Writes the header (twice: a placeholder, then the real one once the payload is known).
fn write_snapshot(replay: &SequenceReplay, file: &mut File) -> io::Result<()> {
    let (payload_len, payload_crc) = {
        let mut buffered = BufWriter::with_capacity(1 << 20, &mut *file);
        buffered.write_all(&[0; HEADER_LEN as usize])?;
        let mut payload = PayloadWriter {
            inner: &mut buffered,
            hasher: crc32fast::Hasher::new(),
            written: 0,
        };
        encode_payload(replay, &mut payload)?;
        let summary = (payload.written, payload.hasher.finalize());
        buffered.flush()?;
        summary
    };
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&encode_header(payload_len, payload_crc))?;
    file.flush()
}

fn encode_header(payload_len: u64, payload_crc: u32) -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&payload_len.to_le_bytes());
    header[24..28].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&header_crc.to_le_bytes());
    header
}

struct PayloadWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> PayloadWriter<W> {
    fn bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
    fn u8(&mut self, value: u8) -> io::Result<()> {
        self.bytes(&[value])
    }
    fn u16(&mut self, value: u16) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }
    fn u32(&mut self, value: u32) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }
    fn u64(&mut self, value: u64) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }
    fn f64(&mut self, value: f64) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }
    fn len_u32(&mut self, len: usize) -> io::Result<()> {
        let len = u32::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("length {len} does not fit the snapshot format"),
            )
        })?;
        self.u32(len)
    }
}

fn encode_payload<W: Write>(replay: &SequenceReplay, out: &mut PayloadWriter<W>) -> io::Result<()> {
    let config = &replay.config;
    out.u64(config.capacity_sequences as u64)?;
    out.u8(match config.sampling {
        SamplingMode::Uniform => 0,
        SamplingMode::Prioritized => 1,
    })?;
    out.f64(config.priority_exponent)?;
    out.f64(config.importance_sampling_exponent)?;
    out.f64(config.initial_max_priority)?;
    let counters = &replay.counters;
    out.u64(counters.inserts_total)?;
    out.u64(counters.evictions_total)?;
    out.u64(counters.samples_total)?;
    out.u64(counters.priority_updates_total)?;
    out.u64(counters.stale_priority_updates_total)?;
    out.f64(replay.max_priority)?;
    out.u64(replay.slots.len() as u64)?;
    for slot in &replay.slots {
        out.u64(slot.generation)?;
        out.f64(slot.priority)?;
        encode_sequence(&slot.item, out)?;
    }
    Ok(())
}

fn encode_sequence<W: Write>(sequence: &Sequence, out: &mut PayloadWriter<W>) -> io::Result<()> {
    out.u32(sequence.env_id)?;
    out.u64(sequence.run_id)?;
    out.u64(sequence.parameter_version)?;
    for dimension in sequence.obs_shape {
        out.len_u32(dimension)?;
    }
    out.len_u32(sequence.len())?;
    out.u16(sequence.burn_in)?;
    out.u16(sequence.padded_steps)?;
    out.u8(u8::from(sequence.truncated))?;
    out.len_u32(sequence.initial_recurrent_state.len())?;
    out.u16(sequence.keypoint_dims)?;
    let mut scratch = Vec::with_capacity(sequence.len() * 4);
    scratch.extend(sequence.actions.iter().flat_map(|a| a.to_le_bytes()));
    out.bytes(&scratch)?;
    scratch.clear();
    scratch.extend(sequence.rewards.iter().flat_map(|r| r.to_le_bytes()));
    out.bytes(&scratch)?;
    scratch.clear();
    scratch.extend(sequence.dones.iter().map(|&done| u8::from(done)));
    out.bytes(&scratch)?;
    scratch.clear();
    scratch.extend(
        sequence
            .initial_recurrent_state
            .iter()
            .flat_map(|x| x.to_le_bytes()),
    );
    out.bytes(&scratch)?;
    scratch.clear();
    scratch.extend(sequence.keypoints.iter().flat_map(|x| x.to_le_bytes()));
    out.bytes(&scratch)?;
    out.bytes(&sequence.observations)
}

/// A load failure before the path is attached.
enum LoadError {
    Io(io::Error),
    Corrupt(String),
    Version(u32),
}

impl LoadError {
    fn at(self, path: &Path) -> ReplayError {
        let path = path.to_owned();
        match self {
            Self::Io(source) => ReplayError::SnapshotIo { path, source },
            Self::Corrupt(reason) => ReplayError::SnapshotCorrupt { path, reason },
            Self::Version(found) => ReplayError::SnapshotVersion {
                path,
                found,
                oldest_supported: SNAPSHOT_OLDEST_READABLE_VERSION,
                supported: SNAPSHOT_VERSION,
            },
        }
    }
}

impl From<io::Error> for LoadError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

fn corrupt(reason: impl Into<String>) -> LoadError {
    LoadError::Corrupt(reason.into())
}

fn read_snapshot(path: &Path) -> Result<SequenceReplay, LoadError> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    read_snapshot_from(BufReader::with_capacity(1 << 20, file), file_len)
}

/// Decodes a snapshot of `file_len` bytes from `reader` (a file, or memory when fuzzing).
fn read_snapshot_from<R: Read>(mut reader: R, file_len: u64) -> Result<SequenceReplay, LoadError> {
    if file_len < HEADER_LEN {
        return Err(corrupt(format!(
            "file is truncated: {file_len} bytes, shorter than the {HEADER_LEN}-byte header"
        )));
    }
    let mut header = [0; HEADER_LEN as usize];
    reader.read_exact(&mut header)?;
    if header[0..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("bad magic, not a replay snapshot"));
    }
    let header_crc = u32::from_le_bytes(header[28..32].try_into().expect("4 bytes"));
    if crc32fast::hash(&header[0..28]) != header_crc {
        return Err(corrupt("header checksum mismatch"));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if !(SNAPSHOT_OLDEST_READABLE_VERSION..=SNAPSHOT_VERSION).contains(&version) {
        return Err(LoadError::Version(version));
    }
    let payload_len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    let payload_crc = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes"));
    let present = file_len - HEADER_LEN;
    if present < payload_len {
        return Err(corrupt(format!(
            "file is truncated: the header announces {payload_len} payload bytes but {present} are present"
        )));
    }
    if present > payload_len {
        return Err(corrupt(format!(
            "{} unexpected bytes after the payload",
            present - payload_len
        )));
    }
    let mut payload = PayloadReader {
        inner: reader,
        hasher: crc32fast::Hasher::new(),
        remaining: payload_len,
    };
    let decoded = decode_payload(&mut payload, version);
    let unread = payload.remaining;
    // Hash whatever decoding left unread so a checksum mismatch can be told apart from a
    // well-formed but invalid payload.
    payload.drain()?;
    let computed = payload.hasher.finalize();
    if computed != payload_crc {
        return Err(corrupt(format!(
            "payload checksum mismatch (stored {payload_crc:#010x}, computed {computed:#010x})"
        )));
    }
    let replay = decoded?;
    if unread > 0 {
        return Err(corrupt(format!(
            "{unread} payload bytes left after the last item"
        )));
    }
    Ok(replay)
}

struct PayloadReader<R: Read> {
    inner: R,
    hasher: crc32fast::Hasher,
    remaining: u64,
}

impl<R: Read> PayloadReader<R> {
    /// Fails unless `len` more payload bytes exist; call before allocating `len` bytes.
    fn ensure_available(&self, len: u64, what: &str) -> Result<(), LoadError> {
        if len > self.remaining {
            return Err(corrupt(format!(
                "{what} needs {len} bytes but only {} payload bytes remain",
                self.remaining
            )));
        }
        Ok(())
    }
    fn bytes(&mut self, buffer: &mut [u8], what: &str) -> Result<(), LoadError> {
        self.ensure_available(buffer.len() as u64, what)?;
        self.inner.read_exact(buffer)?;
        self.hasher.update(buffer);
        self.remaining -= buffer.len() as u64;
        Ok(())
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LoadError> {
        let mut buffer = [0; N];
        self.bytes(&mut buffer, what)?;
        Ok(buffer)
    }
    fn u8(&mut self, what: &str) -> Result<u8, LoadError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, LoadError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f64(&mut self, what: &str) -> Result<f64, LoadError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    /// Reads `count` elements of `width` bytes, checking the size before allocating.
    fn vec(&mut self, count: usize, width: usize, what: &str) -> Result<Vec<u8>, LoadError> {
        let len = count
            .checked_mul(width)
            .ok_or_else(|| corrupt(format!("{what} length overflows")))?;
        self.ensure_available(len as u64, what)?;
        let mut buffer = vec![0; len];
        self.bytes(&mut buffer, what)?;
        Ok(buffer)
    }
    /// Hashes and discards the rest of the payload.
    fn drain(&mut self) -> Result<(), LoadError> {
        let mut buffer = vec![0; 1 << 16];
        while self.remaining > 0 {
            let chunk = self.remaining.min(buffer.len() as u64) as usize;
            self.inner.read_exact(&mut buffer[..chunk])?;
            self.hasher.update(&buffer[..chunk]);
            self.remaining -= chunk as u64;
        }
        Ok(())
    }
}

fn decode_payload<R: Read>(
    input: &mut PayloadReader<R>,
    version: u32,
) -> Result<SequenceReplay, LoadError> {
    let capacity = input.u64("capacity")?;
    let sampling = match input.u8("sampling mode")? {
        0 => SamplingMode::Uniform,
        1 => SamplingMode::Prioritized,
        other => return Err(corrupt(format!("unknown sampling mode {other}"))),
    };
    let config = ReplayConfig {
        capacity_sequences: usize::try_from(capacity)
            .map_err(|_| corrupt(format!("capacity {capacity} does not fit this machine")))?,
        sampling,
        priority_exponent: input.f64("priority exponent")?,
        importance_sampling_exponent: input.f64("importance sampling exponent")?,
        initial_max_priority: input.f64("initial max priority")?,
    };
    config
        .validate()
        .map_err(|error| corrupt(error.to_string()))?;
    let counters = Counters {
        inserts_total: input.u64("insert count")?,
        evictions_total: input.u64("eviction count")?,
        samples_total: input.u64("sample count")?,
        priority_updates_total: input.u64("priority update count")?,
        stale_priority_updates_total: input.u64("stale priority update count")?,
    };
    let max_priority = input.f64("max priority")?;
    if !max_priority.is_finite() || max_priority <= 0.0 {
        return Err(corrupt(format!(
            "max priority {max_priority} is not positive"
        )));
    }
    let item_count = input.u64("item count")?;
    let expected_count = counters.inserts_total.min(capacity);
    if item_count != expected_count {
        return Err(corrupt(format!(
            "{item_count} items stored but {} inserts into capacity {capacity} leave {expected_count}",
            counters.inserts_total
        )));
    }
    // Every item takes at least MIN_ITEM_BYTES of payload: a count the file cannot hold fails
    // here, before anything is allocated for it.
    input.ensure_available(item_count.saturating_mul(MIN_ITEM_BYTES), "the announced items")?;
    let mut tree = SumTree::new(config.capacity_sequences);
    let mut slots = Vec::with_capacity(item_count as usize);
    let oldest_generation = counters.inserts_total - item_count;
    for slot_index in 0..item_count {
        let generation = input.u64("generation")?;
        if generation % capacity != slot_index
            || generation < oldest_generation
            || generation >= counters.inserts_total
        {
            return Err(corrupt(format!(
                "item {slot_index} has generation {generation}, impossible after {} inserts",
                counters.inserts_total
            )));
        }
        let priority = input.f64("priority")?;
        tree.set(
            slot_index as usize,
            priority_mass(priority, config.priority_exponent),
        )
        .map_err(|error| corrupt(format!("item {slot_index}: {error}")))?;
        let sequence = decode_sequence(input, version)?;
        sequence
            .validate()
            .map_err(|error| corrupt(format!("item {slot_index}: {error}")))?;
        slots.push(Slot {
            item: Arc::new(sequence),
            generation,
            priority,
        });
    }
    Ok(SequenceReplay {
        config,
        slots,
        tree,
        max_priority,
        counters,
    })
}

/// Decodes one item of a snapshot of format `version` (version 1 items have no keypoints).
fn decode_sequence<R: Read>(
    input: &mut PayloadReader<R>,
    version: u32,
) -> Result<Sequence, LoadError> {
    let env_id = input.u32("env id")?;
    let run_id = input.u64("run id")?;
    let parameter_version = input.u64("parameter version")?;
    let mut obs_shape = [0; 3];
    for dimension in &mut obs_shape {
        *dimension = input.u32("observation shape")? as usize;
    }
    let steps = input.u32("step count")? as usize;
    let burn_in = input.u16("burn-in")?;
    let padded_steps = input.u16("padded steps")?;
    let truncated = match input.u8("truncated flag")? {
        0 => false,
        1 => true,
        other => return Err(corrupt(format!("truncated flag {other} is not 0 or 1"))),
    };
    let state_len = input.u32("recurrent state length")? as usize;
    let keypoint_dims = if version >= KEYPOINTS_SINCE_VERSION {
        input.u16("keypoint dims")?
    } else {
        0
    };
    let actions = input
        .vec(steps, 2, "actions")?
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let rewards = input
        .vec(steps, 4, "rewards")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let dones = input
        .vec(steps, 1, "dones")?
        .into_iter()
        .map(|byte| match byte {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(format!("done flag {other} is not 0 or 1"))),
        })
        .collect::<Result<_, _>>()?;
    let initial_recurrent_state = input
        .vec(state_len, 4, "recurrent state")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let keypoint_floats = steps
        .checked_mul(usize::from(keypoint_dims))
        .ok_or_else(|| corrupt("keypoints length overflows"))?;
    let keypoints = input
        .vec(keypoint_floats, 4, "keypoints")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let frame = obs_shape
        .iter()
        .try_fold(1usize, |product, &dimension| product.checked_mul(dimension))
        .ok_or_else(|| corrupt("observation shape overflows"))?;
    let observations = input.vec(steps, frame, "observations")?;
    Ok(Sequence {
        env_id,
        run_id,
        observations,
        obs_shape,
        keypoints,
        keypoint_dims,
        actions,
        rewards,
        dones,
        truncated,
        burn_in,
        padded_steps,
        initial_recurrent_state,
        parameter_version,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::testing::SequenceBuilder;

    fn filled_replay() -> SequenceReplay {
        filled_replay_with_keypoints(0)
    }

    /// Six inserts of five-step sequences into capacity 4 (two evicted), with varied fields and
    /// `keypoint_dims` keypoint floats per step; three priorities updated.
    fn filled_replay_with_keypoints(keypoint_dims: u16) -> SequenceReplay {
        let mut replay = SequenceReplay::new(ReplayConfig {
            capacity_sequences: 4,
            sampling: SamplingMode::Prioritized,
            priority_exponent: 0.9,
            importance_sampling_exponent: 0.6,
            initial_max_priority: 1.0,
        })
        .unwrap();
        for tag in 0..6u8 {
            let sequence = SequenceBuilder::new(5)
                .obs_shape([3, 2, 2])
                .env_id(u32::from(tag))
                .run_id(1000 + u64::from(tag))
                .padded_steps(u16::from(tag % 3))
                .truncated(tag % 2 == 0)
                .burn_in(u16::from(tag % 2))
                .recurrent_state(vec![f32::from(tag) * 0.5, -1.25, 3.0])
                .parameter_version(7 * u64::from(tag))
                .tag(tag * 10)
                .keypoints(keypoint_dims)
                .build();
            replay.insert(sequence).unwrap();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let batch = replay.sample(3, &mut rng).unwrap();
        let priorities: Vec<f64> = (0..batch.len()).map(|i| 0.25 + i as f64).collect();
        replay.update_priorities(&batch.keys, &priorities).unwrap();
        replay
    }

    #[test]
    fn round_trip_preserves_items_priorities_counters_and_config() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("replay.snapshot");
        let replay = filled_replay();
        replay.save_snapshot(&path).unwrap();
        let loaded = SequenceReplay::load_snapshot(&path).unwrap();
        assert_eq!(loaded.config, replay.config);
        assert_eq!(loaded.counters, replay.counters);
        assert_eq!(loaded.max_priority, replay.max_priority);
        assert_eq!(loaded.tree, replay.tree);
        assert_eq!(loaded.slots.len(), replay.slots.len());
        for (a, b) in loaded.slots.iter().zip(&replay.slots) {
            assert_eq!(a.generation, b.generation);
            assert_eq!(a.priority, b.priority);
            assert_eq!(*a.item, *b.item);
        }
        assert_eq!(loaded.stats(), replay.stats());
        // Sampling continues identically from the loaded table.
        let mut original = replay.clone();
        let mut restored = loaded;
        let a = original
            .sample(32, &mut ChaCha8Rng::seed_from_u64(5))
            .unwrap();
        let b = restored
            .sample(32, &mut ChaCha8Rng::seed_from_u64(5))
            .unwrap();
        assert_eq!(a.keys, b.keys);
        assert_eq!(a.weights, b.weights);
        // Inserts continue with the next generation in the next FIFO slot.
        let key = restored.insert(SequenceBuilder::new(2).build()).unwrap();
        assert_eq!(
            key,
            SampleKey {
                slot: 2,
                generation: 6
            }
        );
    }

    use crate::SampleKey;

    #[test]
    fn keypoints_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("keypoints.snapshot");
        let mut replay = filled_replay_with_keypoints(6);
        // One item with distinct, non-integer values, including negative zero and extremes.
        let mut item = (*replay.slots[1].item).clone();
        for (index, value) in item.keypoints.iter_mut().enumerate() {
            if *value != 0.0 {
                *value = -1.0 + index as f32 * 0.0625;
            }
        }
        item.keypoints[0] = -0.0;
        item.keypoints[1] = f32::MAX;
        item.keypoints[2] = f32::MIN_POSITIVE;
        item.validate().unwrap();
        replay.slots[1].item = Arc::new(item);
        replay.save_snapshot(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
        let loaded = SequenceReplay::load_snapshot(&path).unwrap();
        assert_eq!(loaded.slots.len(), 4);
        for (a, b) in loaded.slots.iter().zip(&replay.slots) {
            assert_eq!(a.item.keypoint_dims, 6);
            assert_eq!(a.item.keypoints.len(), 5 * 6);
            let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&a.item.keypoints),
                bits(&b.item.keypoints),
                "bit-exact"
            );
            assert_eq!(*a.item, *b.item);
            assert_eq!((a.generation, a.priority), (b.generation, b.priority));
        }
        assert_eq!(loaded.counters, replay.counters);
        assert_eq!(loaded.tree, replay.tree);
        // Keypoints cost exactly 4 bytes per float and 2 bytes of dims per item on disk.
        let without = tempfile::tempdir().unwrap();
        let without_path = without.path().join("plain.snapshot");
        filled_replay().save_snapshot(&without_path).unwrap();
        let plain_len = fs::metadata(&without_path).unwrap().len();
        assert_eq!(bytes.len() as u64, plain_len + 4 * (5 * 6 * 4));
    }

    /// `testdata/snapshot_v1.bin` was written by the version 1 code (before keypoints) from
    /// the table `filled_replay()` builds.
    const SNAPSHOT_V1: &[u8] = include_bytes!("../testdata/snapshot_v1.bin");

    #[test]
    fn a_version_1_snapshot_loads_without_keypoints() {
        assert_eq!(
            u32::from_le_bytes(SNAPSHOT_V1[8..12].try_into().unwrap()),
            1
        );
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("v1.snapshot");
        fs::write(&path, SNAPSHOT_V1).unwrap();
        let loaded = SequenceReplay::load_snapshot(&path).unwrap();
        let expected = filled_replay();
        assert_eq!(loaded.config, expected.config);
        assert_eq!(loaded.counters, expected.counters);
        assert_eq!(loaded.max_priority, expected.max_priority);
        assert_eq!(loaded.tree, expected.tree);
        assert_eq!(loaded.slots.len(), 4);
        for (a, b) in loaded.slots.iter().zip(&expected.slots) {
            assert_eq!((a.generation, a.priority), (b.generation, b.priority));
            assert_eq!(a.item.keypoint_dims, 0);
            assert!(a.item.keypoints.is_empty());
            assert_eq!(*a.item, *b.item);
        }
        // Saving again writes the current version, and that loads to the same table.
        loaded.save_snapshot(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
            SNAPSHOT_VERSION
        );
        assert_eq!(
            bytes.len(),
            SNAPSHOT_V1.len() + 4 * 2,
            "2 dims bytes per item"
        );
        let reloaded = SequenceReplay::load_snapshot(&path).unwrap();
        assert_eq!(reloaded.slots.len(), 4);
        for (a, b) in reloaded.slots.iter().zip(&expected.slots) {
            assert_eq!(*a.item, *b.item);
        }
    }

    #[test]
    fn a_version_1_snapshot_is_still_checksummed() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("v1.snapshot");
        let mut bytes = SNAPSHOT_V1.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        assert!(corrupt_reason(&path).starts_with("payload checksum mismatch"));
    }

    #[test]
    fn an_empty_replay_round_trips() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("empty.snapshot");
        let replay = SequenceReplay::new(ReplayConfig::default()).unwrap();
        replay.save_snapshot(&path).unwrap();
        let loaded = SequenceReplay::load_snapshot(&path).unwrap();
        assert!(loaded.is_empty());
        assert_eq!(loaded.config, replay.config);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            HEADER_LEN + 8 + 1 + 24 + 40 + 8 + 8
        );
    }

    fn saved_bytes() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("replay.snapshot");
        filled_replay().save_snapshot(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        (directory, path, bytes)
    }

    fn corrupt_reason(path: &Path) -> String {
        match SequenceReplay::load_snapshot(path) {
            Err(ReplayError::SnapshotCorrupt { reason, .. }) => reason,
            other => panic!("expected a corrupt snapshot, got {other:?}"),
        }
    }

    #[test]
    fn a_flipped_payload_bit_fails_the_checksum() {
        let (_directory, path, mut bytes) = saved_bytes();
        // Flip bits in the config, in an item header, and in the observation bytes.
        for offset in [
            HEADER_LEN as usize + 3,
            HEADER_LEN as usize + 130,
            bytes.len() - 1,
        ] {
            let original = bytes[offset];
            bytes[offset] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
            let reason = corrupt_reason(&path);
            assert!(
                reason.starts_with("payload checksum mismatch"),
                "offset {offset}: {reason}"
            );
            bytes[offset] = original;
        }
    }

    #[test]
    fn truncation_and_trailing_bytes_are_reported() {
        let (_directory, path, bytes) = saved_bytes();
        fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        assert!(corrupt_reason(&path).starts_with("file is truncated: the header announces"));
        fs::write(&path, &bytes[..10]).unwrap();
        assert_eq!(
            corrupt_reason(&path),
            "file is truncated: 10 bytes, shorter than the 32-byte header"
        );
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0, 0]);
        fs::write(&path, &longer).unwrap();
        assert_eq!(
            corrupt_reason(&path),
            "2 unexpected bytes after the payload"
        );
    }

    #[test]
    fn header_damage_is_reported() {
        let (_directory, path, bytes) = saved_bytes();
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        fs::write(&path, &bad_magic).unwrap();
        assert_eq!(corrupt_reason(&path), "bad magic, not a replay snapshot");
        let mut bad_length = bytes.clone();
        bad_length[16] ^= 1;
        fs::write(&path, &bad_length).unwrap();
        assert_eq!(corrupt_reason(&path), "header checksum mismatch");
        let error = SequenceReplay::load_snapshot(&path)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("snapshot ")
                && error.ends_with("is corrupt: header checksum mismatch")
        );
    }

    #[test]
    fn an_unknown_version_is_reported() {
        let (_directory, path, mut bytes) = saved_bytes();
        for version in [0u32, 3] {
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            let header_crc = crc32fast::hash(&bytes[0..28]);
            bytes[28..32].copy_from_slice(&header_crc.to_le_bytes());
            fs::write(&path, &bytes).unwrap();
            let error = SequenceReplay::load_snapshot(&path).unwrap_err();
            assert!(
                matches!(
                    error,
                    ReplayError::SnapshotVersion {
                        found,
                        oldest_supported: 1,
                        supported: 2,
                        ..
                    } if found == version
                ),
                "{error:?}"
            );
            assert!(
                error.to_string().ends_with(&format!(
                    "has format version {version}, this build reads versions 1 to 2"
                )),
                "{error}"
            );
        }
    }

    #[test]
    fn a_consistent_checksum_over_invalid_values_is_still_rejected() {
        // Re-encode a snapshot whose item has a NaN reward, with valid checksums.
        let (_directory, path, _) = saved_bytes();
        let mut replay = SequenceReplay::load_snapshot(&path).unwrap();
        let mut item = (*replay.slots[0].item).clone();
        item.rewards[0] = f32::NAN;
        replay.slots[0].item = Arc::new(item);
        replay.save_snapshot(&path).unwrap();
        let reason = corrupt_reason(&path);
        assert_eq!(
            reason,
            "item 0: invalid sequence: reward at step 0 is NaN, rewards must be finite"
        );
        // The same for a keypoint.
        let mut replay = filled_replay();
        let mut item = (*replay.slots[2].item).clone();
        item.keypoint_dims = 2;
        item.keypoints = vec![0.0; item.len() * 2];
        item.keypoints[3] = f32::INFINITY;
        replay.slots[2].item = Arc::new(item);
        replay.save_snapshot(&path).unwrap();
        assert_eq!(
            corrupt_reason(&path),
            "item 2: invalid sequence: keypoints entry 1 of step 1 is inf, keypoints must be finite"
        );
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let directory = tempfile::tempdir().unwrap();
        assert!(matches!(
            SequenceReplay::load_snapshot(directory.path().join("absent")),
            Err(ReplayError::SnapshotIo { .. })
        ));
    }

    #[test]
    fn a_failed_write_keeps_the_previous_snapshot_and_no_temporary() {
        let (directory, path, bytes) = saved_bytes();
        let error = write_atomically(&path, |file| {
            file.write_all(b"half a snapshot")?;
            Err(io::Error::other("simulated crash mid-write"))
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "simulated crash mid-write");
        assert_eq!(fs::read(&path).unwrap(), bytes, "previous snapshot intact");
        let leftovers: Vec<_> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("replay.snapshot")]);
        SequenceReplay::load_snapshot(&path).unwrap();
    }

    #[test]
    fn a_stale_temporary_from_a_crash_is_ignored_then_replaced() {
        let (directory, path, bytes) = saved_bytes();
        let temporary = directory.path().join(".replay.snapshot.tmp");
        fs::write(&temporary, &bytes[..bytes.len() / 2]).unwrap();
        let loaded = SequenceReplay::load_snapshot(&path).unwrap();
        assert_eq!(loaded.len(), 4);
        let empty = SequenceReplay::new(ReplayConfig::default()).unwrap();
        empty.save_snapshot(&path).unwrap();
        assert!(
            !temporary.exists(),
            "the temporary was renamed over the target"
        );
        assert!(SequenceReplay::load_snapshot(&path).unwrap().is_empty());
    }

    #[test]
    fn saving_into_a_missing_directory_fails_cleanly() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("missing").join("replay.snapshot");
        let error = filled_replay().save_snapshot(&path).unwrap_err();
        assert!(matches!(error, ReplayError::SnapshotIo { .. }));
        assert!(!path.exists());
    }
}
