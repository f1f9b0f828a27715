"""Python side of the ALE parity checks in `atari/tests/parity.rs`.

Run with the project venv (`$PERMAKEY_VENV/bin/python`, made by `make setup`). Three commands:

  trace        reads a JSON request on stdin and plays each run frame by frame on
               `ale_py.ALEInterface`; writes one JSON object on stdout, per run and per frame:
               md5 of the RGB screen bytes, reward, game_over, lives and the RAM as hex.
               Request: {"runs": [{"name", "rom", "seed", "repeat_action_probability",
                                   "actions": [ALE action ids]}]}
  unsupported  prints {"unsupported": [game ids]}: the ROMs of a folder that
               `ALEInterface.isSupportedROM` refuses (returns None).
  resize       reads N raw frames (N x H x W x 3, uint8) from a file and writes
               `cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)` of each.
"""

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np
from ale_py import Action, ALEInterface, LoggerMode


def trace_run(run):
    """Plays one run; the game is reset whenever it is over, after that frame is recorded."""
    ale = ALEInterface()
    ale.setInt("random_seed", int(run["seed"]))
    ale.setFloat("repeat_action_probability", float(run["repeat_action_probability"]))
    ale.loadROM(run["rom"])
    screen = np.empty((ale.getScreen().shape[0], ale.getScreen().shape[1], 3), dtype=np.uint8)
    screen_md5, rewards, game_overs, lives, rams = [], [], [], [], []
    for action in run["actions"]:
        reward = ale.act(Action(int(action)))
        ale.getScreenRGB(screen)
        screen_md5.append(hashlib.md5(screen.tobytes()).hexdigest())
        rewards.append(int(reward))
        over = bool(ale.game_over())
        game_overs.append(over)
        lives.append(int(ale.lives()))
        rams.append(ale.getRAM().tobytes().hex())
        if over:
            ale.reset_game()
    return {
        "name": run["name"],
        "screen_md5": screen_md5,
        "reward": rewards,
        "game_over": game_overs,
        "lives": lives,
        "ram": rams,
    }


def command_trace(_args):
    request = json.load(sys.stdin)
    json.dump({"runs": [trace_run(run) for run in request["runs"]]}, sys.stdout)


def command_unsupported(args):
    refused = sorted(
        rom.stem
        for rom in pathlib.Path(args.rom_dir).glob("*.bin")
        if ALEInterface.isSupportedROM(str(rom)) is None
    )
    json.dump({"unsupported": refused}, sys.stdout)


def command_resize(args):
    import cv2  # only this command needs OpenCV

    frames = np.fromfile(args.input, dtype=np.uint8)
    frame_len = args.src_height * args.src_width * 3
    if frames.size % frame_len != 0:
        sys.exit(f"ale_trace: {args.input} holds {frames.size} bytes, not a multiple of {frame_len}")
    frames = frames.reshape(-1, args.src_height, args.src_width, 3)
    out = np.empty((frames.shape[0], args.height, args.width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (args.width, args.height), interpolation=cv2.INTER_AREA)
    out.tofile(args.output)
    json.dump({"frames": int(frames.shape[0]), "opencv": cv2.__version__}, sys.stdout)


def main():
    ALEInterface.setLoggerMode(LoggerMode.Error)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("trace").set_defaults(run=command_trace)
    unsupported = commands.add_parser("unsupported")
    unsupported.add_argument("rom_dir")
    unsupported.set_defaults(run=command_unsupported)
    resize = commands.add_parser("resize")
    resize.add_argument("input")
    resize.add_argument("output")
    resize.add_argument("--src-height", type=int, default=210)
    resize.add_argument("--src-width", type=int, default=160)
    resize.add_argument("--height", type=int, default=84)
    resize.add_argument("--width", type=int, default=84)
    resize.set_defaults(run=command_resize)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
