"""Baseline (c) of `atari/benches/env_throughput.rs`: agent steps per second of Python EnvPool.

Settings mirror our Atari-100k training env: RGB 84x84 (INTER_AREA), stack 1, frame skip 4 with
the max over the last two frames, no sticky actions, 1..30 no-op starts, episodic life, FIRE
reset, 4000-step time limit, no reward clipping, minimal action set. `--envs` environments run
on `--threads` worker threads in synchronous mode (batch size = number of envs); actions are
uniformly random. Prints one JSON object on stdout.

Needs `scripts/setup.sh --bench` (envpool is in scripts/requirements-bench.txt).
"""

import argparse
import json
import sys
import time

import numpy as np

try:
    import envpool
except ImportError as error:
    sys.exit(f"envpool_atari: cannot import envpool ({error}); run `scripts/setup.sh --bench` (or `make bench`)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="MsPacman", help="EnvPool task name without -v5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured time first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = envpool.make(
        f"{args.game}-v5",
        env_type="gymnasium",
        num_envs=args.envs,
        batch_size=args.envs,
        num_threads=args.threads,
        seed=args.seed,
        img_height=84,
        img_width=84,
        gray_scale=False,
        stack_num=1,
        frame_skip=4,
        noop_max=30,
        episodic_life=True,
        use_fire_reset=True,
        reward_clip=False,
        repeat_action_probability=0.0,
        use_inter_area_resize=True,
        full_action_space=False,
        max_episode_steps=4000,
    )
    num_actions = env.action_space.n
    actions = np.random.default_rng(args.seed).integers(0, num_actions, size=(1024, args.envs), dtype=np.int32)
    obs, _ = env.reset()
    assert obs.shape == (args.envs, 3, 84, 84), obs.shape

    def run(seconds):
        steps, i = 0, 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            env.step(actions[i & 1023])
            i += 1
            steps += args.envs
            now = time.perf_counter()
            if now >= deadline:
                return steps, now - start

    run(args.warmup)
    steps, elapsed = run(args.seconds)
    print(json.dumps({
        "impl": "envpool",
        "envpool": envpool.__version__,
        "game": args.game,
        "threads": args.threads,
        "envs": args.envs,
        "steps": steps,
        "seconds": elapsed,
        "steps_per_second": steps / elapsed,
    }))


if __name__ == "__main__":
    main()
