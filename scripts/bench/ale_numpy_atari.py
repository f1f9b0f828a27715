"""Baseline (d) of `atari/benches/env_throughput.rs`: the Atari-100k preprocessing written in Python.

`ale_py.ALEInterface` plus numpy and OpenCV, the way the reference's baselines wrappers do it:
1..30 single-frame no-op starts, frame skip 4 with `np.maximum` over the last two RGB frames,
FIRE reset, episodic life, a 4000-step time limit, `cv2.resize(..., INTER_AREA)` to 84x84 RGB,
minimal action set, no sticky actions, uniformly random actions. `--processes` independent
copies run in parallel processes (the GIL rules out threads); their rates are summed.
OpenCV is held to one thread per process so each process uses one core. Prints one JSON object.
"""

import argparse
import json
import multiprocessing
import time

import cv2
import numpy as np
from ale_py import Action, ALEInterface, LoggerMode, roms

FRAME_SKIP = 4
NOOP_MAX = 30
MAX_EPISODE_STEPS = 4000


class PreprocessedAtari:
    """One environment: the DQN wrappers in the reference's order, over preallocated buffers."""

    def __init__(self, game, seed):
        self.ale = ALEInterface()
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(roms.get_rom_path(game))
        self.actions = list(self.ale.getMinimalActionSet())
        self.fire_reset = len(self.actions) >= 3 and self.actions[1] == Action.FIRE
        self.rng = np.random.default_rng(seed)
        height, width = self.ale.getScreenDims()
        self.frames = np.zeros((2, height, width, 3), dtype=np.uint8)
        self.pooled = np.zeros((height, width, 3), dtype=np.uint8)
        self.lives = 0
        self.game_steps = 0
        self.needs_game_reset = True

    def _skip(self, action):
        reward = 0
        for k in range(FRAME_SKIP):
            reward += self.ale.act(action)
            if k >= FRAME_SKIP - 2:
                self.ale.getScreenRGB(self.frames[k - (FRAME_SKIP - 2)])
            if self.ale.game_over():
                self.ale.getScreenRGB(self.frames[1])
                if k < FRAME_SKIP - 2:
                    self.frames[0] = self.frames[1]
                break
        return reward

    def _observation(self):
        np.maximum(self.frames[0], self.frames[1], out=self.pooled)
        return cv2.resize(self.pooled, (84, 84), interpolation=cv2.INTER_AREA)

    def reset(self):
        if self.needs_game_reset:
            self.ale.reset_game()
            for _ in range(int(self.rng.integers(1, NOOP_MAX + 1))):
                self.ale.act(self.actions[0])
                if self.ale.game_over():
                    self.ale.reset_game()
            self.ale.getScreenRGB(self.frames[1])
            self.frames[0] = self.frames[1]
            self.game_steps = 0
            self.needs_game_reset = False
        else:
            self._skip(self.actions[0])
        if self.fire_reset:
            for index in (1, 2):
                self._skip(self.actions[index])
                if self.ale.game_over():
                    self.needs_game_reset = True
                    return self.reset()
        self.lives = self.ale.lives()
        return self._observation()

    def step(self, action_index):
        reward = self._skip(self.actions[action_index])
        self.game_steps += 1
        game_over = self.ale.game_over()
        lives = self.ale.lives()
        terminated = game_over or (0 < lives < self.lives)
        self.lives = lives
        truncated = not terminated and self.game_steps >= MAX_EPISODE_STEPS
        self.needs_game_reset = game_over or truncated
        return self._observation(), reward, terminated, truncated


def measure(game, seed, warmup, seconds, start_barrier=None):
    """Agent steps per second of one environment, auto-resetting finished episodes."""
    cv2.setNumThreads(1)
    ALEInterface.setLoggerMode(LoggerMode.Error)
    env = PreprocessedAtari(game, seed)
    actions = np.random.default_rng(seed + 1).integers(0, len(env.actions), size=4096)
    env.reset()

    def run(duration):
        steps = 0
        start = time.perf_counter()
        deadline = start + duration
        while True:
            _, _, terminated, truncated = env.step(actions[steps & 4095])
            if terminated or truncated:
                env.reset()
            steps += 1
            now = time.perf_counter()
            if now >= deadline:
                return steps, now - start

    run(warmup)
    if start_barrier is not None:
        start_barrier.wait()
    steps, elapsed = run(seconds)
    return steps / elapsed


def _worker(args):
    game, seed, warmup, seconds, barrier = args
    return measure(game, seed, warmup, seconds, barrier)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="MsPacman", help="ale-py ROM id, e.g. MsPacman or ms_pacman")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured time first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    game = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(args.game))

    if args.processes == 1:
        rates = [measure(game, args.seed, args.warmup, args.seconds)]
    else:
        context = multiprocessing.get_context("fork")
        with context.Manager() as manager:
            barrier = manager.Barrier(args.processes)
            jobs = [(game, args.seed + i, args.warmup, args.seconds, barrier) for i in range(args.processes)]
            with context.Pool(args.processes) as pool:
                rates = pool.map(_worker, jobs)
    print(json.dumps({
        "impl": "ale_py+numpy+cv2",
        "opencv": cv2.__version__,
        "game": game,
        "processes": args.processes,
        "per_process_steps_per_second": rates,
        "steps_per_second": sum(rates),
    }))


if __name__ == "__main__":
    main()
