//! RAM -> object positions on the 210x160 screen and the 84x84 observation frame.
//!
//! RAM addresses are transcribed from AtariARI's public annotations
//! (mila-iqia/atari-representation-learning, `atariari/benchmark/ram_annotations.py`).
//! The linear maps from RAM values to screen pixels are ours: fitted with the
//! `fit_mapping` example on recorded random play (box centre of the object's colour regressed
//! on the RAM value) and checked by `tests/ram_mappings.rs`, which asserts that mapped points
//! lie within 2 px of sprite pixels of the object's colour on most recorded frames.
//!
//! Only verified objects are listed. Not mapped: MsPacman's fruit (rarely on screen in random
//! play, so unverified), Seaquest's enemies and divers (AtariARI gives x only), Frostbite's
//! ice floes, enemies and bear (x only), and every BattleZone object (AtariARI gives the
//! tank's x and size only; the tank is a perspective-scaled sprite with no y address).

use serde::{Deserialize, Serialize};

use crate::{KeypointMetricError, Result};

/// Games with verified RAM -> screen mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Game {
    MsPacman,
    Seaquest,
    Frostbite,
}

impl Game {
    pub const ALL: [Game; 3] = [Game::MsPacman, Game::Seaquest, Game::Frostbite];

    /// The game id for [`atari::RomCatalog`].
    pub fn id(self) -> &'static str {
        match self {
            Game::MsPacman => "MsPacman",
            Game::Seaquest => "Seaquest",
            Game::Frostbite => "Frostbite",
        }
    }

    /// Parses a game id in any spelling `atari::roms::normalise_game_name` accepts.
    pub fn from_id(name: &str) -> Result<Self> {
        let wanted = atari::roms::normalise_game_name(name);
        Game::ALL
            .into_iter()
            .find(|game| atari::roms::normalise_game_name(game.id()) == wanted)
            .ok_or_else(|| KeypointMetricError::UnsupportedGame(name.to_owned()))
    }

    /// The objects whose positions this game's RAM gives.
    pub fn objects(self) -> &'static [ObjectSpec] {
        match self {
            Game::MsPacman => MS_PACMAN,
            Game::Seaquest => SEAQUEST,
            Game::Frostbite => FROSTBITE,
        }
    }
}

/// `screen = slope * ram + intercept` for one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisMap {
    pub ram_address: usize,
    pub slope: f32,
    pub intercept: f32,
}

impl AxisMap {
    fn apply(&self, ram: &[u8; 128]) -> f32 {
        self.slope * ram[self.ram_address] as f32 + self.intercept
    }
}

/// One annotated object: its RAM addresses, the fitted map to the centre of its sprite, and the
/// sprite colours the verification looks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectSpec {
    pub name: &'static str,
    pub y: AxisMap,
    pub x: AxisMap,
    /// RGB colours of the sprite (ALE NTSC palette), for verification and overlays.
    pub colours: &'static [[u8; 3]],
    /// Screen rows where the object can be (excludes HUD rows such as life icons).
    pub rows: (usize, usize),
}

/// An object's centre on the 210x160 screen, (y, x) in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectPosition {
    pub name: &'static str,
    pub y: f32,
    pub x: f32,
}

const fn axis(ram_address: usize, slope: f32, intercept: f32) -> AxisMap {
    AxisMap { ram_address, slope, intercept }
}

// MsPacman: all five sprites are 8 px wide, 10 px tall; the sprite's columns are
// ram_x - 12 ..= ram_x - 5 and its rows ram_y + 1 ..= ram_y + 10 (fits: slope 0.994..1.000,
// x intercept -8.0..-8.5, y intercept 5.6..6.0). Ghosts flicker: each is drawn on about half of
// the frames, so a ghost's colour is absent on the others.
const MS_PACMAN_PLAYER_COLOURS: &[[u8; 3]] = &[[210, 164, 74]];
const MS_PACMAN: &[ObjectSpec] = &[
    ObjectSpec {
        name: "player",
        y: axis(16, 1.0, 5.5),
        x: axis(10, 1.0, -8.5),
        colours: MS_PACMAN_PLAYER_COLOURS,
        rows: (0, 172),
    },
    ObjectSpec { name: "sue", y: axis(12, 1.0, 5.5), x: axis(6, 1.0, -8.5), colours: &[[180, 122, 48]], rows: (0, 172) },
    ObjectSpec { name: "inky", y: axis(13, 1.0, 5.5), x: axis(7, 1.0, -8.5), colours: &[[84, 184, 153]], rows: (0, 172) },
    ObjectSpec { name: "pinky", y: axis(14, 1.0, 5.5), x: axis(8, 1.0, -8.5), colours: &[[198, 89, 179]], rows: (0, 172) },
    ObjectSpec { name: "blinky", y: axis(15, 1.0, 5.5), x: axis(9, 1.0, -8.5), colours: &[[200, 72, 72]], rows: (0, 172) },
];

// Seaquest: the submarine is 16 px wide from column ram_x (fit: slope 0.9999, intercept 7.50);
// its y map is slightly steeper than 1 (fit: slope 1.0274, intercept 36.26).
const SEAQUEST: &[ObjectSpec] = &[ObjectSpec {
    name: "player",
    y: axis(97, 1.0274, 36.26),
    x: axis(70, 1.0, 7.5),
    colours: &[[187, 187, 53]],
    rows: (40, 170),
}];

// Frostbite: the player is 8 px wide from column ram_x and 18 px tall from row ram_y + 29 (face
// colour fit: x slope 0.994 intercept 3.88, y centre of the face = ram_y + 36); the keypoint is
// the sprite centre (ram_y + 37.5, ram_x + 3.5).
const FROSTBITE: &[ObjectSpec] = &[ObjectSpec {
    name: "player",
    y: axis(100, 1.0, 37.5),
    x: axis(102, 1.0, 3.5),
    colours: &[[162, 98, 33], [198, 108, 58], [142, 142, 142], [162, 162, 42]],
    rows: (40, 190),
}];

/// The screen positions of `game`'s annotated objects in this RAM (every listed object, drawn
/// or not: ground truth comes from game state, not pixels).
pub fn object_positions(game: Game, ram: &[u8; 128]) -> Vec<ObjectPosition> {
    game.objects().iter().map(|spec| ObjectPosition { name: spec.name, y: spec.y.apply(ram), x: spec.x.apply(ram) }).collect()
}

/// Maps a screen point (y, x) on 210x160 to the 84x84 observation: (y * 84/210, x * 84/160).
pub fn screen_to_frame84(y: f32, x: f32) -> [f32; 2] {
    [y * 84.0 / atari::SCREEN_HEIGHT as f32, x * 84.0 / atari::SCREEN_WIDTH as f32]
}

/// The positions of `game`'s objects on the 84x84 observation, as (y, x) rows.
pub fn object_positions_frame84(game: Game, ram: &[u8; 128]) -> Vec<[f32; 2]> {
    object_positions(game, ram).iter().map(|p| screen_to_frame84(p.y, p.x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_pacman_start_position_maps_to_sprite_centre() {
        // start of a game: player ram (x 88, y 98) drawn at columns 76..=83, rows 99..=108
        let mut ram = [0u8; 128];
        ram[10] = 88;
        ram[16] = 98;
        let player = object_positions(Game::MsPacman, &ram)[0];
        assert_eq!((player.name, player.y, player.x), ("player", 103.5, 79.5));
    }

    #[test]
    fn frame84_scales_each_axis() {
        assert_eq!(screen_to_frame84(210.0, 160.0), [84.0, 84.0]);
        assert_eq!(screen_to_frame84(105.0, 40.0), [42.0, 21.0]);
    }

    #[test]
    fn game_ids_parse_in_any_spelling() {
        assert_eq!(Game::from_id("ms_pacman").unwrap(), Game::MsPacman);
        assert_eq!(Game::from_id("SeaquestNoFrameskip-v4").unwrap(), Game::Seaquest);
        assert!(Game::from_id("BattleZone").is_err());
    }
}
