// Thin C interface over ALE 0.12.1's ALEInterface for the Rust bindings (atari-sys).
// Every entry point catches C++ exceptions and reports them through an error buffer, so no
// exception crosses into Rust. The caller checks a ROM's md5 (and isSupportedROM) before
// loading it: ALE's own loader calls exit(1) on an unsupported ROM.
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "ale/ale_interface.hpp"
#include "ale/common/Log.hpp"

namespace {
void write_error(char* buffer, size_t capacity, const char* message) {
  if (buffer == nullptr || capacity == 0) return;
  std::strncpy(buffer, message, capacity - 1);
  buffer[capacity - 1] = '\0';
}
}  // namespace

extern "C" {

struct PkAle {
  ale::ALEInterface ale;
};

void pk_ale_quiet_logs(void) { ale::Logger::setMode(ale::Logger::Error); }

// 1 when ALE recognises the ROM's md5 as a supported game, 0 when not, -1 on I/O error.
int pk_ale_is_supported_rom(const char* path, char* err, size_t err_len) {
  try {
    return ale::ALEInterface::isSupportedROM(path).has_value() ? 1 : 0;
  } catch (const std::exception& e) {
    write_error(err, err_len, e.what());
    return -1;
  }
}

PkAle* pk_ale_new(char* err, size_t err_len) {
  try {
    return new PkAle();
  } catch (const std::exception& e) {
    write_error(err, err_len, e.what());
    return nullptr;
  }
}

void pk_ale_delete(PkAle* handle) { delete handle; }

int pk_ale_set_int(PkAle* h, const char* key, int value, char* err, size_t err_len) {
  try { h->ale.setInt(key, value); return 0; }
  catch (const std::exception& e) { write_error(err, err_len, e.what()); return -1; }
}

int pk_ale_set_float(PkAle* h, const char* key, float value, char* err, size_t err_len) {
  try { h->ale.setFloat(key, value); return 0; }
  catch (const std::exception& e) { write_error(err, err_len, e.what()); return -1; }
}

int pk_ale_set_bool(PkAle* h, const char* key, int value, char* err, size_t err_len) {
  try { h->ale.setBool(key, value != 0); return 0; }
  catch (const std::exception& e) { write_error(err, err_len, e.what()); return -1; }
}

int pk_ale_load_rom(PkAle* h, const char* path, char* err, size_t err_len) {
  try { h->ale.loadROM(path); return 0; }
  catch (const std::exception& e) { write_error(err, err_len, e.what()); return -1; }
}

int pk_ale_act(PkAle* h, int action, float paddle_strength) {
  return h->ale.act(static_cast<ale::Action>(action), paddle_strength);
}

int pk_ale_game_over(PkAle* h, int with_truncation) { return h->ale.game_over(with_truncation != 0) ? 1 : 0; }
int pk_ale_game_truncated(PkAle* h) { return h->ale.game_truncated() ? 1 : 0; }
void pk_ale_reset_game(PkAle* h) { h->ale.reset_game(); }
int pk_ale_lives(PkAle* h) { return h->ale.lives(); }
int pk_ale_frame_number(PkAle* h) { return h->ale.getFrameNumber(); }
int pk_ale_episode_frame_number(PkAle* h) { return h->ale.getEpisodeFrameNumber(); }

// Writes up to `capacity` action ids; returns how many the set holds.
int pk_ale_action_set(PkAle* h, int minimal, int* out, int capacity) {
  ale::ActionVect actions = minimal ? h->ale.getMinimalActionSet() : h->ale.getLegalActionSet();
  int n = static_cast<int>(actions.size());
  for (int i = 0; i < n && i < capacity; ++i) out[i] = static_cast<int>(actions[i]);
  return n;
}

int pk_ale_screen_width(PkAle* h) { return static_cast<int>(h->ale.getScreen().width()); }
int pk_ale_screen_height(PkAle* h) { return static_cast<int>(h->ale.getScreen().height()); }

// The current screen as palette indices, width*height bytes, row-major.
void pk_ale_screen_indices(PkAle* h, uint8_t* out) {
  const ale::ALEScreen& screen = h->ale.getScreen();
  std::memcpy(out, screen.getArray(), screen.width() * screen.height());
}

// The 256-entry palette: `rgb` gets 768 bytes (R, G, B per index), `gray` 256 bytes.
void pk_ale_palette(PkAle* h, uint8_t* rgb, uint8_t* gray) {
  const auto& palette = h->ale.theOSystem->colourPalette();
  for (int i = 0; i < 256; ++i) {
    int r, g, b;
    palette.getRGB(i, r, g, b);
    rgb[3 * i] = static_cast<uint8_t>(r);
    rgb[3 * i + 1] = static_cast<uint8_t>(g);
    rgb[3 * i + 2] = static_cast<uint8_t>(b);
    gray[i] = palette.getGrayscale(i);
  }
}

// The full RGB screen exactly as ALE renders it (reference path for parity checks).
void pk_ale_screen_rgb(PkAle* h, uint8_t* out) {
  std::vector<unsigned char> buffer;
  h->ale.getScreenRGB(buffer);
  std::memcpy(out, buffer.data(), buffer.size());
}

void pk_ale_ram(PkAle* h, uint8_t* out) {
  const ale::ALERAM& ram = h->ale.getRAM();
  std::memcpy(out, ram.array(), ram.size());
}

}  // extern "C"
