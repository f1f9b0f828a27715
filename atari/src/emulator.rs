//! A safe, owned handle on one ALE 0.12.1 emulator.

use std::{
    ffi::{c_char, CString},
    ptr::NonNull,
    sync::Once,
};

use atari_sys as sys;

use crate::{roms::Rom, AtariError, Result};

/// Native Atari 2600 screen height and width as ALE renders them.
pub const SCREEN_HEIGHT: usize = 210;
pub const SCREEN_WIDTH: usize = 160;
pub use sys::RAM_SIZE;

/// ALE's action id for FIRE (`PLAYER_A_FIRE`).
pub const ALE_FIRE: i32 = 1;

/// Settings ALE reads when a ROM is loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmulatorSettings {
    /// ALE's `random_seed` (drives sticky actions and ALE's own randomness).
    pub seed: i32,
    /// ALE's `repeat_action_probability` (sticky actions; 0 disables them).
    pub repeat_action_probability: f32,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        Self { seed: 0, repeat_action_probability: 0.0 }
    }
}

/// One emulator. `Send` (a handle moves between threads) but not `Sync`.
pub struct Emulator {
    handle: NonNull<sys::PkAle>,
    game: String,
    width: usize,
    height: usize,
    palette_rgb: [[u8; 3]; 256],
    palette_gray: [u8; 256],
    minimal_actions: Vec<i32>,
    legal_actions: Vec<i32>,
}

// SAFETY: an ALEInterface owns all of its state; ALE keeps no thread-affine data, and the
// `&mut self` receivers below make every mutation exclusive. The only global, the log level,
// is set once under `Once`.
unsafe impl Send for Emulator {}

const ERR_LEN: usize = 512;

fn message(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn c_string(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| AtariError::Ale(format!("string with a NUL byte: {text:?}")))
}

impl Emulator {
    /// Loads `rom` (already md5-checked by [`crate::RomCatalog::resolve`]) with `settings`.
    pub fn new(rom: &Rom, settings: EmulatorSettings) -> Result<Self> {
        static QUIET: Once = Once::new();
        // SAFETY: sets a global log level; no other state.
        QUIET.call_once(|| unsafe { sys::pk_ale_quiet_logs() });
        if !(0.0..=1.0).contains(&settings.repeat_action_probability) {
            return Err(AtariError::Config(format!(
                "repeat_action_probability must be in [0, 1], got {}",
                settings.repeat_action_probability
            )));
        }
        let path = c_string(rom.path.to_str().ok_or_else(|| AtariError::Ale("ROM path is not UTF-8".into()))?)?;
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: the path is a valid C string and err a writable buffer of ERR_LEN bytes.
        let supported = unsafe { sys::pk_ale_is_supported_rom(path.as_ptr(), err.as_mut_ptr(), ERR_LEN) };
        match supported {
            1 => {}
            0 => return Err(AtariError::Ale(format!(
                "ALE 0.12.1 does not support the ROM {} as a single-player game (ale-py refuses it too; \
                 it ships for the multi-player API)",
                rom.path.display()
            ))),
            _ => return Err(AtariError::Ale(message(&err))),
        }
        // SAFETY: as above.
        let raw = unsafe { sys::pk_ale_new(err.as_mut_ptr(), ERR_LEN) };
        let handle = NonNull::new(raw).ok_or_else(|| AtariError::Ale(message(&err)))?;
        let mut emulator = Self {
            handle,
            game: rom.id.clone(),
            width: 0,
            height: 0,
            palette_rgb: [[0; 3]; 256],
            palette_gray: [0; 256],
            minimal_actions: Vec::new(),
            legal_actions: Vec::new(),
        };
        emulator.set_int("random_seed", settings.seed)?;
        emulator.set_float("repeat_action_probability", settings.repeat_action_probability)?;
        emulator.set_int("frame_skip", 1)?;
        // SAFETY: handle is live; path and err as above.
        let loaded = unsafe { sys::pk_ale_load_rom(handle.as_ptr(), path.as_ptr(), err.as_mut_ptr(), ERR_LEN) };
        if loaded != 0 {
            return Err(AtariError::Ale(format!("loading {}: {}", rom.path.display(), message(&err))));
        }
        // SAFETY: handle is live with a ROM loaded; the buffers have the sizes the shim writes.
        unsafe {
            emulator.width = sys::pk_ale_screen_width(handle.as_ptr()) as usize;
            emulator.height = sys::pk_ale_screen_height(handle.as_ptr()) as usize;
            let mut rgb = [0u8; 768];
            sys::pk_ale_palette(handle.as_ptr(), rgb.as_mut_ptr(), emulator.palette_gray.as_mut_ptr());
            for (i, chunk) in rgb.chunks_exact(3).enumerate() {
                emulator.palette_rgb[i] = [chunk[0], chunk[1], chunk[2]];
            }
        }
        emulator.minimal_actions = emulator.action_set(true);
        emulator.legal_actions = emulator.action_set(false);
        Ok(emulator)
    }

    fn set_int(&mut self, key: &str, value: i32) -> Result<()> {
        let key = c_string(key)?;
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: live handle, valid C string, err buffer of ERR_LEN.
        let rc = unsafe { sys::pk_ale_set_int(self.handle.as_ptr(), key.as_ptr(), value, err.as_mut_ptr(), ERR_LEN) };
        if rc == 0 { Ok(()) } else { Err(AtariError::Ale(message(&err))) }
    }

    fn set_float(&mut self, key: &str, value: f32) -> Result<()> {
        let key = c_string(key)?;
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: live handle, valid C string, err buffer of ERR_LEN.
        let rc = unsafe { sys::pk_ale_set_float(self.handle.as_ptr(), key.as_ptr(), value, err.as_mut_ptr(), ERR_LEN) };
        if rc == 0 { Ok(()) } else { Err(AtariError::Ale(message(&err))) }
    }

    fn action_set(&self, minimal: bool) -> Vec<i32> {
        let mut out = vec![0i32; 32];
        // SAFETY: live handle; `out` holds 32 ints and the shim writes at most `capacity`.
        let n = unsafe { sys::pk_ale_action_set(self.handle.as_ptr(), minimal as i32, out.as_mut_ptr(), 32) };
        out.truncate(n.clamp(0, 32) as usize);
        out
    }

    /// Canonical game id of the loaded ROM.
    pub fn game(&self) -> &str {
        &self.game
    }

    /// ALE action ids of the minimal action set (gym's v4 default).
    pub fn minimal_actions(&self) -> &[i32] {
        &self.minimal_actions
    }

    /// ALE action ids of the full 18-action set.
    pub fn legal_actions(&self) -> &[i32] {
        &self.legal_actions
    }

    /// Emulates one frame with the ALE action id `action`; returns the frame's reward.
    pub fn act(&mut self, action: i32) -> i32 {
        debug_assert!((0..18).contains(&action), "ALE action ids are 0..18");
        // SAFETY: live handle; action ids outside 0..18 are never passed by the safe API.
        unsafe { sys::pk_ale_act(self.handle.as_ptr(), action, 1.0) }
    }

    /// True once the game is over (or ALE's own frame limit truncated it).
    pub fn game_over(&self) -> bool {
        // SAFETY: live handle.
        unsafe { sys::pk_ale_game_over(self.handle.as_ptr(), 1) != 0 }
    }

    pub fn reset_game(&mut self) {
        // SAFETY: live handle.
        unsafe { sys::pk_ale_reset_game(self.handle.as_ptr()) }
    }

    pub fn lives(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { sys::pk_ale_lives(self.handle.as_ptr()) }
    }

    /// Frames emulated since the ROM was loaded.
    pub fn frame_number(&self) -> u64 {
        // SAFETY: live handle.
        unsafe { sys::pk_ale_frame_number(self.handle.as_ptr()) as u64 }
    }

    /// Frames emulated since the last `reset_game`.
    pub fn episode_frame_number(&self) -> u64 {
        // SAFETY: live handle.
        unsafe { sys::pk_ale_episode_frame_number(self.handle.as_ptr()) as u64 }
    }

    pub fn screen_height(&self) -> usize {
        self.height
    }

    pub fn screen_width(&self) -> usize {
        self.width
    }

    /// The palette: RGB of each of the 256 colour indices.
    pub fn palette_rgb(&self) -> &[[u8; 3]; 256] {
        &self.palette_rgb
    }

    /// The palette's grayscale value of each colour index (ALE's own luminance table).
    pub fn palette_gray(&self) -> &[u8; 256] {
        &self.palette_gray
    }

    /// Copies the screen as palette indices (`height * width` bytes, row-major) into `out`.
    pub fn screen_indices(&self, out: &mut [u8]) -> Result<()> {
        let expected = self.width * self.height;
        if out.len() != expected {
            return Err(AtariError::BufferSize { expected, got: out.len() });
        }
        // SAFETY: live handle; `out` has exactly width*height bytes.
        unsafe { sys::pk_ale_screen_indices(self.handle.as_ptr(), out.as_mut_ptr()) };
        Ok(())
    }

    /// Copies the RGB screen (`height * width * 3` bytes) through the palette into `out`.
    pub fn screen_rgb(&self, indices_scratch: &mut [u8], out: &mut [u8]) -> Result<()> {
        self.screen_indices(indices_scratch)?;
        if out.len() != indices_scratch.len() * 3 {
            return Err(AtariError::BufferSize { expected: indices_scratch.len() * 3, got: out.len() });
        }
        for (pixel, &index) in out.chunks_exact_mut(3).zip(indices_scratch.iter()) {
            pixel.copy_from_slice(&self.palette_rgb[index as usize]);
        }
        Ok(())
    }

    /// ALE's own `getScreenRGB` (the reference the palette path is tested against).
    pub fn screen_rgb_reference(&self, out: &mut [u8]) -> Result<()> {
        let expected = self.width * self.height * 3;
        if out.len() != expected {
            return Err(AtariError::BufferSize { expected, got: out.len() });
        }
        // SAFETY: live handle; `out` has exactly width*height*3 bytes.
        unsafe { sys::pk_ale_screen_rgb(self.handle.as_ptr(), out.as_mut_ptr()) };
        Ok(())
    }

    /// The 128 bytes of console RAM.
    pub fn ram(&self) -> [u8; RAM_SIZE] {
        let mut ram = [0u8; RAM_SIZE];
        // SAFETY: live handle; `ram` holds the 128 bytes the shim copies.
        unsafe { sys::pk_ale_ram(self.handle.as_ptr(), ram.as_mut_ptr()) };
        ram
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SAFETY: the handle came from pk_ale_new and is dropped once.
        unsafe { sys::pk_ale_delete(self.handle.as_ptr()) }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("game", &self.game).field("frame", &self.frame_number()).finish()
    }
}
