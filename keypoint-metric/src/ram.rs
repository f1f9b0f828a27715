//! RAM -> object positions on the 210x160 screen and the 84x84 observation frame.
//!
//! RAM addresses are transcribed from AtariARI's public annotations
//! (mila-iqia/atari-representation-learning, `atariari/benchmark/ram_annotations.py`), except
//! the visibility and sprite bytes marked "ours" below, which we found on recorded frames. The
//! maps from RAM values to screen pixels are ours: fitted on recorded random play (the
//! `fit_mapping` example, or `dump_frames` plus offline analysis) and checked by
//! `tests/ram_mappings.rs`, which asserts that mapped points lie within 2 px of sprite pixels of
//! the object's colour on recorded frames.
//!
//! A map is `screen = slope * ram[address] + intercept` plus optional [`Correction`]s: offsets
//! that depend on other RAM bytes (BattleZone's tank sprites differ in width and can be
//! mirrored, so the centre of the drawn sprite depends on the sprite id and the reflect bit).
//! An object with [`ObjectSpec::visible_when`] conditions is ground truth only on frames where
//! all of them hold; [`object_positions`] leaves it out otherwise (dead player, enemy off screen).
//!
//! Mapped (see the crate README for the verification figures):
//! - MsPacman: player and the four ghosts (always listed; ghosts flicker);
//! - Seaquest: player submarine;
//! - Frostbite: player, while `ram[107] <= 5` (ours: 0 standing, 1..=5 jump frames, 6..=17
//!   sinking, 18 gone until respawn);
//! - BattleZone: the two enemy tanks' on-screen sprites (AtariARI's `blue_tank_*` and
//!   `blue_tank2_*` bytes), while the tank is alive and inside the mapped screen band.
//!
//! Not mapped: MsPacman's fruit (rarely on screen in random play, so unverified), Seaquest's
//! enemies and divers (AtariARI gives x only), Frostbite's ice floes, enemies and bear (x only),
//! BattleZone's saucers and fighters (they reuse the tank bytes with other sprite ids; too rare
//! in random play to verify), its radar blips (AtariARI has no address for them) and tanks in
//! the screen-edge bands where the sprite is clipped or wraps.

use serde::{Deserialize, Serialize};

use crate::{KeypointMetricError, Result};

/// Games with verified RAM -> screen mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Game {
    MsPacman,
    Seaquest,
    Frostbite,
    BattleZone,
}

impl Game {
    pub const ALL: [Game; 4] = [Game::MsPacman, Game::Seaquest, Game::Frostbite, Game::BattleZone];

    /// The game id for [`atari::RomCatalog`].
    pub fn id(self) -> &'static str {
        match self {
            Game::MsPacman => "MsPacman",
            Game::Seaquest => "Seaquest",
            Game::Frostbite => "Frostbite",
            Game::BattleZone => "BattleZone",
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
            Game::BattleZone => BATTLE_ZONE,
        }
    }
}

/// A test on one RAM byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamCondition {
    /// `min <= ram[address] <= max`; when `min > max` the range wraps: `ram[address] >= min` or
    /// `ram[address] <= max`.
    Range { address: usize, min: u8, max: u8 },
    /// `ram[address] & mask == value`.
    Bits { address: usize, mask: u8, value: u8 },
}

impl RamCondition {
    pub fn holds(&self, ram: &[u8; 128]) -> bool {
        match *self {
            RamCondition::Range { address, min, max } if min <= max => (min..=max).contains(&ram[address]),
            RamCondition::Range { address, min, max } => ram[address] >= min || ram[address] <= max,
            RamCondition::Bits { address, mask, value } => ram[address] & mask == value,
        }
    }
}

fn all_hold(conditions: &[RamCondition], ram: &[u8; 128]) -> bool {
    conditions.iter().all(|condition| condition.holds(ram))
}

/// An offset added to an [`AxisMap`] when all of `when` hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Correction {
    /// Adds `offset`.
    Constant { when: &'static [RamCondition], offset: f32 },
    /// Adds the offset listed for the value of `ram[key]`; unlisted values add 0.
    Lookup { when: &'static [RamCondition], key: usize, offsets: &'static [(u8, f32)] },
}

impl Correction {
    fn offset(&self, ram: &[u8; 128]) -> f32 {
        match *self {
            Correction::Constant { when, offset } => {
                if all_hold(when, ram) {
                    offset
                } else {
                    0.0
                }
            }
            Correction::Lookup { when, key, offsets } => {
                if !all_hold(when, ram) {
                    return 0.0;
                }
                offsets.iter().find(|(value, _)| *value == ram[key]).map_or(0.0, |&(_, offset)| offset)
            }
        }
    }
}

/// `screen = slope * ram[ram_address] + intercept + (the offsets of the corrections that apply)`
/// for one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisMap {
    pub ram_address: usize,
    pub slope: f32,
    pub intercept: f32,
    pub corrections: &'static [Correction],
}

impl AxisMap {
    /// The screen coordinate this RAM gives.
    pub fn apply(&self, ram: &[u8; 128]) -> f32 {
        self.slope * ram[self.ram_address] as f32 + self.intercept + self.corrections.iter().map(|c| c.offset(ram)).sum::<f32>()
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
    /// The object is on screen (and ground truth) only when all of these hold; empty: always.
    pub visible_when: &'static [RamCondition],
}

impl ObjectSpec {
    /// Whether this RAM says the object is drawn (see [`ObjectSpec::visible_when`]).
    pub fn is_visible(&self, ram: &[u8; 128]) -> bool {
        all_hold(self.visible_when, ram)
    }

    /// The mapped centre, whether or not the object is visible.
    pub fn position(&self, ram: &[u8; 128]) -> ObjectPosition {
        ObjectPosition { name: self.name, y: self.y.apply(ram), x: self.x.apply(ram) }
    }
}

/// An object's centre on the 210x160 screen, (y, x) in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectPosition {
    pub name: &'static str,
    pub y: f32,
    pub x: f32,
}

const fn axis(ram_address: usize, slope: f32, intercept: f32) -> AxisMap {
    AxisMap { ram_address, slope, intercept, corrections: &[] }
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
        visible_when: &[],
    },
    ObjectSpec { name: "sue", y: axis(12, 1.0, 5.5), x: axis(6, 1.0, -8.5), colours: &[[180, 122, 48]], rows: (0, 172), visible_when: &[] },
    ObjectSpec { name: "inky", y: axis(13, 1.0, 5.5), x: axis(7, 1.0, -8.5), colours: &[[84, 184, 153]], rows: (0, 172), visible_when: &[] },
    ObjectSpec { name: "pinky", y: axis(14, 1.0, 5.5), x: axis(8, 1.0, -8.5), colours: &[[198, 89, 179]], rows: (0, 172), visible_when: &[] },
    ObjectSpec { name: "blinky", y: axis(15, 1.0, 5.5), x: axis(9, 1.0, -8.5), colours: &[[200, 72, 72]], rows: (0, 172), visible_when: &[] },
];

// Seaquest: the submarine is 16 px wide from column ram_x (fit: slope 0.9999, intercept 7.50);
// its y map is slightly steeper than 1 (fit: slope 1.0274, intercept 36.26).
const SEAQUEST: &[ObjectSpec] = &[ObjectSpec {
    name: "player",
    y: axis(97, 1.0274, 36.26),
    x: axis(70, 1.0, 7.5),
    colours: &[[187, 187, 53]],
    rows: (40, 170),
    visible_when: &[],
}];

// Frostbite: the player is 8 px wide from column ram_x and 18 px tall from row ram_y + 29 (face
// colour fit: x slope 0.994 intercept 3.88, y centre of the face = ram_y + 36); the keypoint is
// the sprite centre (ram_y + 37.5, ram_x + 3.5). ram[107] (ours) is the player's animation
// state: 0 standing or walking, 1..=5 the frames of a jump, 6..=17 sinking (death), 18 not drawn
// until the respawn; RAM keeps the last position meanwhile, so only 0..=5 is ground truth.
/// Frostbite's player animation byte (0 standing, 1..=5 jumping, 6..=17 sinking, 18 gone).
pub const FROSTBITE_PLAYER_STATE: usize = 107;
//
// Ice floes: four rows (AtariARI: x of the top row at 34, then 33, 32, 31), each three floes 32 px
// apart. A floe is a 16-px line drawn 7 rows tall and sheared 8 px: its top row spans columns
// x..=x+15 and its bottom row x-8..=x+7, so its centre is (row centre, x + 32 k + 3.5), k = 0, 1, 2,
// modulo the 160-px screen width (a floe pushed past the right edge re-enters on the left). The
// four rows are drawn at screen rows 96..=102, 122..=128, 148..=154 and 174..=180. A floe is
// listed while it lies whole inside columns 8..=159 (the game blanks columns 0..=7), i.e.
// x + 32 k is 16..=144 modulo 160.
const FROSTBITE_FLOE_COLOURS: &[[u8; 3]] = &[[214, 214, 214], [84, 138, 210]];

/// Frostbite's ice floe `$k` (0, 1, 2) of the row whose x is at `$address`, centred on `$row_centre`.
macro_rules! frostbite_floe {
    ($name:expr, $address:expr, $row_centre:expr, $k:expr) => {
        ObjectSpec {
            name: $name,
            y: AxisMap { ram_address: $address, slope: 0.0, intercept: $row_centre, corrections: &[] },
            x: AxisMap {
                ram_address: $address,
                slope: 1.0,
                intercept: 32.0 * $k as f32 + 3.5,
                corrections: &[Correction::Constant {
                    when: &[RamCondition::Range { address: $address, min: (160 - 32 * $k) as u8, max: 255 }],
                    offset: -160.0,
                }],
            },
            colours: FROSTBITE_FLOE_COLOURS,
            rows: ($row_centre as usize - 3, $row_centre as usize + 4),
            visible_when: &[RamCondition::Range {
                address: $address,
                min: ((16 + 160 - 32 * $k) % 160) as u8,
                max: ((144 + 160 - 32 * $k) % 160) as u8,
            }],
        }
    };
}

const FROSTBITE: &[ObjectSpec] = &[
    ObjectSpec {
        name: "player",
        y: axis(100, 1.0, 37.5),
        x: axis(102, 1.0, 3.5),
        colours: &[[162, 98, 33], [198, 108, 58], [142, 142, 142], [162, 162, 42]],
        rows: (40, 190),
        visible_when: &[RamCondition::Range { address: FROSTBITE_PLAYER_STATE, min: 0, max: 5 }],
    },
    frostbite_floe!("floe_1a", 34, 99.0, 0),
    frostbite_floe!("floe_1b", 34, 99.0, 1),
    frostbite_floe!("floe_1c", 34, 99.0, 2),
    frostbite_floe!("floe_2a", 33, 125.0, 0),
    frostbite_floe!("floe_2b", 33, 125.0, 1),
    frostbite_floe!("floe_2c", 33, 125.0, 2),
    frostbite_floe!("floe_3a", 32, 151.0, 0),
    frostbite_floe!("floe_3b", 32, 151.0, 1),
    frostbite_floe!("floe_3c", 32, 151.0, 2),
    frostbite_floe!("floe_4a", 31, 177.0, 0),
    frostbite_floe!("floe_4b", 31, 177.0, 1),
    frostbite_floe!("floe_4c", 31, 177.0, 2),
];

// BattleZone: first-person; the enemy tanks are drawn on the horizon (rows 88..=104) with a
// perspective sprite. AtariARI: tank 1 sprite id 46 ("facing direction"), size 47, x 48; tank 2
// at 52, 53, 54. Ours: the reflect bit (bit 3, clear = mirrored) of tank 1 at 51 and of tank 2
// at 57; 62 = enemy state (low two bits 01: tanks in play; 10 before the first tank of a life,
// 11 enemy exploding, 4 saucer or fighter); 65 = death countdown (non-zero while the player's
// tank is hit and the screen shatters). Sprite ids 11..=46 are tanks (size 3..=9); 1 and 2 are
// explosion debris; saucers and fighters use other ids.
//
// Map (exact on every verified frame): the sprite's 16-px box starts at column ram_x + 1, so a
// 16-px-wide sprite is centred at ram_x + 8.5; narrower or wider sprites shift the centre (the
// unmirrored table), and a mirrored sprite is drawn at the other end of its box (the mirrored
// table adds box - width). In the band ram_x = 5..=16 the game draws everything 5 px further
// left; for ram_x > 128 the sprite reaches the right edge and, past 143, wraps to the left one,
// so those frames are not ground truth. The vertical centre is 96 (rows 93..=97 at size 3 up to
// 88..=104 at size 9), corrected per size by the size table.
/// Centre offset (from ram_x + 8.5) of each tank sprite id, unmirrored.
const TANK_SPRITE_OFFSETS: &[(u8, f32)] = &[
    (11, -6.0),
    (12, -5.5),
    (13, -5.0),
    (14, -5.5),
    (16, -5.0),
    (17, -3.0),
    (18, -2.0),
    (19, -3.0),
    (21, -3.0),
    (22, -2.0),
    (26, -2.0),
    (27, -2.0),
    (28, -1.0),
    (30, 2.0),
    (35, 2.0),
    (36, 4.0),
    (46, 2.0),
];
/// Extra offset of a mirrored tank sprite: its box width minus its drawn width.
const TANK_MIRRORED_SHIFT: &[(u8, f32)] = &[
    (11, 2.0),
    (12, 1.0),
    (14, 1.0),
    (17, 6.0),
    (18, 4.0),
    (19, 6.0),
    (21, 6.0),
    (22, 4.0),
    (26, 4.0),
    (27, 4.0),
    (28, 2.0),
    (30, 12.0),
    (35, 12.0),
    (36, 8.0),
    (46, 12.0),
];
/// Vertical centre offset (from row 96) per tank size.
const TANK_SIZE_OFFSETS: &[(u8, f32)] = &[(3, -1.0), (6, -0.5), (7, 1.0), (8, 1.0)];
const BATTLE_ZONE_TANK_COLOURS: &[[u8; 3]] = &[[66, 136, 176], [142, 142, 142], [24, 80, 128]];

/// A BattleZone tank from its sprite id, size, x and reflect bytes.
macro_rules! battle_zone_tank {
    ($name:expr, $sprite:expr, $size:expr, $x:expr, $reflect:expr) => {
        ObjectSpec {
            name: $name,
            y: AxisMap {
                ram_address: $size,
                slope: 0.0,
                intercept: 96.0,
                corrections: &[Correction::Lookup { when: &[], key: $size, offsets: TANK_SIZE_OFFSETS }],
            },
            x: AxisMap {
                ram_address: $x,
                slope: 1.0,
                intercept: 8.5,
                corrections: &[
                    Correction::Lookup { when: &[], key: $sprite, offsets: TANK_SPRITE_OFFSETS },
                    Correction::Lookup {
                        when: &[RamCondition::Bits { address: $reflect, mask: 8, value: 0 }],
                        key: $sprite,
                        offsets: TANK_MIRRORED_SHIFT,
                    },
                    Correction::Constant { when: &[RamCondition::Range { address: $x, min: 5, max: 16 }], offset: -5.0 },
                ],
            },
            colours: BATTLE_ZONE_TANK_COLOURS,
            rows: (85, 110),
            visible_when: &[
                RamCondition::Range { address: $sprite, min: 11, max: 46 },
                RamCondition::Bits { address: 62, mask: 3, value: 1 },
                RamCondition::Range { address: 65, min: 0, max: 0 },
                RamCondition::Range { address: $x, min: 0, max: 128 },
            ],
        }
    };
}

const BATTLE_ZONE: &[ObjectSpec] = &[battle_zone_tank!("tank", 46, 47, 48, 51), battle_zone_tank!("tank2", 52, 53, 54, 57)];

/// Every listed object's mapped position, visible or not (for verification and debugging).
pub fn all_object_positions(game: Game, ram: &[u8; 128]) -> Vec<ObjectPosition> {
    game.objects().iter().map(|spec| spec.position(ram)).collect()
}

/// The screen positions of `game`'s objects that this RAM says are on screen: every object
/// without [`ObjectSpec::visible_when`] conditions (ground truth from game state, not pixels:
/// MsPacman's flickering ghosts stay in), and the others while their conditions hold.
pub fn object_positions(game: Game, ram: &[u8; 128]) -> Vec<ObjectPosition> {
    game.objects().iter().filter(|spec| spec.is_visible(ram)).map(|spec| spec.position(ram)).collect()
}

/// Maps a screen point (y, x) on 210x160 to the 84x84 observation: (y * 84/210, x * 84/160).
pub fn screen_to_frame84(y: f32, x: f32) -> [f32; 2] {
    [y * 84.0 / atari::SCREEN_HEIGHT as f32, x * 84.0 / atari::SCREEN_WIDTH as f32]
}

/// The positions of `game`'s visible objects (see [`object_positions`]) on the 84x84
/// observation, as (y, x) rows.
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
        assert_eq!(Game::from_id("battle_zone").unwrap(), Game::BattleZone);
        assert!(Game::from_id("Pong").is_err());
    }

    #[test]
    fn frostbite_player_is_ground_truth_only_while_drawn() {
        let mut ram = [0u8; 128];
        ram[100] = 27;
        ram[102] = 60;
        let player = |ram: &[u8; 128]| object_positions(Game::Frostbite, ram).into_iter().find(|p| p.name == "player");
        for (state, listed) in [(0, true), (3, true), (5, true), (6, false), (17, false), (18, false)] {
            ram[FROSTBITE_PLAYER_STATE] = state;
            assert_eq!(player(&ram).is_some(), listed, "state {state}");
        }
        ram[FROSTBITE_PLAYER_STATE] = 0;
        let player = player(&ram).unwrap();
        assert_eq!((player.y, player.x), (64.5, 63.5));
        // the unfiltered position is still there for a dead player
        ram[FROSTBITE_PLAYER_STATE] = 18;
        assert_eq!(all_object_positions(Game::Frostbite, &ram)[0].y, 64.5);
    }

    #[test]
    fn frostbite_floes_are_spaced_32_px_and_wrap_around_the_screen() {
        let top_row = |x: u8| {
            let mut ram = [0u8; 128];
            ram[34] = x;
            object_positions(Game::Frostbite, &ram)
                .into_iter()
                .filter(|p| p.name.starts_with("floe_1"))
                .map(|p| (p.name, p.y, p.x))
                .collect::<Vec<_>>()
        };
        assert_eq!(top_row(16), vec![("floe_1a", 99.0, 19.5), ("floe_1b", 99.0, 51.5), ("floe_1c", 99.0, 83.5)]);
        // x 150: the first floe straddles the right edge (left out), the others re-entered left
        assert_eq!(top_row(150), vec![("floe_1b", 99.0, 25.5), ("floe_1c", 99.0, 57.5)]);
        // x 100: the third floe would start at column 164 = 4, inside the blanked columns
        assert_eq!(top_row(100).len(), 2);
    }

    #[test]
    fn ram_ranges_wrap_when_min_exceeds_max() {
        let mut ram = [0u8; 128];
        let wrapped = RamCondition::Range { address: 0, min: 144, max: 112 };
        for (value, holds) in [(0, true), (112, true), (113, false), (143, false), (144, true), (255, true)] {
            ram[0] = value;
            assert_eq!(wrapped.holds(&ram), holds, "value {value}");
        }
    }

    fn battle_zone_ram(sprite: u8, size: u8, x: u8, mirrored: bool) -> [u8; 128] {
        let mut ram = [0u8; 128];
        ram[46] = sprite;
        ram[47] = size;
        ram[48] = x;
        ram[51] = if mirrored { 0 } else { 8 };
        ram[62] = 1;
        ram
    }

    #[test]
    fn battle_zone_tank_centre_follows_sprite_width_and_mirroring() {
        // recorded: sprite 29 (16 px wide, size 6) at ram x 60 covers columns 61..=76, rows 91..=100
        let tank = object_positions(Game::BattleZone, &battle_zone_ram(29, 6, 60, false))[0];
        assert_eq!((tank.name, tank.y, tank.x), ("tank", 95.5, 68.5));
        // sprite 17 (10 px): unmirrored columns 61..=70, mirrored 67..=76
        assert_eq!(object_positions(Game::BattleZone, &battle_zone_ram(17, 4, 60, false))[0].x, 65.5);
        assert_eq!(object_positions(Game::BattleZone, &battle_zone_ram(17, 4, 60, true))[0].x, 71.5);
        // sprite 30 (20 px in a 32-px box), mirrored: columns 73..=92
        assert_eq!(object_positions(Game::BattleZone, &battle_zone_ram(30, 6, 60, true))[0].x, 82.5);
        // ram x 5..=16 is drawn 5 px further left
        assert_eq!(object_positions(Game::BattleZone, &battle_zone_ram(29, 6, 10, false))[0].x, 13.5);
    }

    #[test]
    fn battle_zone_tanks_are_listed_only_while_on_screen() {
        let visible = |ram: &[u8; 128]| object_positions(Game::BattleZone, ram).len();
        assert_eq!(visible(&battle_zone_ram(29, 6, 60, false)), 1);
        assert_eq!(visible(&battle_zone_ram(29, 6, 129, false)), 0, "right-edge band");
        assert_eq!(visible(&battle_zone_ram(2, 6, 60, false)), 0, "explosion debris");
        assert_eq!(visible(&battle_zone_ram(0, 6, 60, false)), 0, "no enemy");
        let mut ram = battle_zone_ram(29, 6, 60, false);
        ram[62] = 2;
        assert_eq!(visible(&ram), 0, "before the first tank of a life");
        ram[62] = 4;
        assert_eq!(visible(&ram), 0, "saucer or fighter");
        ram[62] = 17;
        assert_eq!(visible(&ram), 1, "two tanks in play");
        ram[65] = 90;
        assert_eq!(visible(&ram), 0, "player hit");
        ram[65] = 0;
        ram[52] = 34;
        ram[53] = 7;
        ram[54] = 100;
        ram[57] = 8;
        let tanks = object_positions(Game::BattleZone, &ram);
        assert_eq!(tanks.iter().map(|t| (t.name, t.x)).collect::<Vec<_>>(), vec![("tank", 68.5), ("tank2", 108.5)]);
        assert_eq!(tanks[1].y, 97.0);
    }
}
