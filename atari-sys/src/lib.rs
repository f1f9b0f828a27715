//! Raw FFI to the Arcade Learning Environment 0.12.1 through the C shim in `shim/ale_shim.cpp`.
//!
//! Everything here is `unsafe` and minimal; the `atari` crate wraps it in a safe `Emulator`.
//! Rules the safe wrapper upholds: a handle is used from one thread at a time; settings are set
//! before `pk_ale_load_rom`; a ROM is loaded only after its md5 was checked, because ALE calls
//! `exit(1)` on an unsupported ROM; screen buffers are `width * height` bytes, RAM 128 bytes.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_float, c_int};

/// Opaque ALE handle (`struct PkAle` in the shim).
#[repr(C)]
pub struct PkAle {
    _private: [u8; 0],
}

/// Bytes of the Atari 2600's RAM.
pub const RAM_SIZE: usize = 128;

unsafe extern "C" {
    pub fn pk_ale_quiet_logs();
    pub fn pk_ale_is_supported_rom(path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
    pub fn pk_ale_new(err: *mut c_char, err_len: usize) -> *mut PkAle;
    pub fn pk_ale_delete(handle: *mut PkAle);
    pub fn pk_ale_set_int(h: *mut PkAle, key: *const c_char, value: c_int, err: *mut c_char, err_len: usize) -> c_int;
    pub fn pk_ale_set_float(h: *mut PkAle, key: *const c_char, value: c_float, err: *mut c_char, err_len: usize) -> c_int;
    pub fn pk_ale_set_bool(h: *mut PkAle, key: *const c_char, value: c_int, err: *mut c_char, err_len: usize) -> c_int;
    pub fn pk_ale_load_rom(h: *mut PkAle, path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
    pub fn pk_ale_act(h: *mut PkAle, action: c_int, paddle_strength: c_float) -> c_int;
    pub fn pk_ale_game_over(h: *mut PkAle, with_truncation: c_int) -> c_int;
    pub fn pk_ale_game_truncated(h: *mut PkAle) -> c_int;
    pub fn pk_ale_reset_game(h: *mut PkAle);
    pub fn pk_ale_lives(h: *mut PkAle) -> c_int;
    pub fn pk_ale_frame_number(h: *mut PkAle) -> c_int;
    pub fn pk_ale_episode_frame_number(h: *mut PkAle) -> c_int;
    pub fn pk_ale_action_set(h: *mut PkAle, minimal: c_int, out: *mut c_int, capacity: c_int) -> c_int;
    pub fn pk_ale_screen_width(h: *mut PkAle) -> c_int;
    pub fn pk_ale_screen_height(h: *mut PkAle) -> c_int;
    pub fn pk_ale_screen_indices(h: *mut PkAle, out: *mut u8);
    pub fn pk_ale_palette(h: *mut PkAle, rgb: *mut u8, gray: *mut u8);
    pub fn pk_ale_screen_rgb(h: *mut PkAle, out: *mut u8);
    pub fn pk_ale_ram(h: *mut PkAle, out: *mut u8);
}
