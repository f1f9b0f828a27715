#!/usr/bin/env python3
"""Builds RESULTS.md (issue 11) from the run files that scripts/results-runs.sh copies to results/runs.

    python3 scripts/results_report.py results/runs > RESULTS.md

Reads, per run, <experiment>/<cell>/seed<N>/{run.json, config.toml, final_scores.json, eval.csv,
metrics.csv, keypoints-<noise>.json}; writes the markdown to stdout and one SVG learning-curve plot
per table row group to results/plots/ (next to the runs folder). The paper's figures are the
poster's tables (../shared/seed/permakey-poster.txt), transcribed below. Deviations from the
reference protocol are not typed in by hand: every config value of a run that differs from
config/example.toml (the reference protocol: Atari-100k, reference layer sizes) is listed.
Standard library only.
"""
import csv
import json
import math
import sys
import tomllib
from pathlib import Path

# The poster's "Atari RL Quantitative Results" and "More RL Results" tables: mean (std), as printed.
PAPER_MAIN = {
    # game: {variant: (mean, std)}; Transporter (re-imp.) is the paper's Transporter + CNN agent.
    "MsPacman": {"pkey-cnn": ("1038.5", "417.1"), "pkey-gnn": ("906.3", "382.2"), "transporter-cnn": ("983.0", "806.3")},
    "Seaquest": {"pkey-cnn": ("520.0", "159.9"), "pkey-gnn": ("375.3", "75.4"), "transporter-cnn": ("455.3", "160.6")},
    "Frostbite": {"pkey-cnn": ("310.7", "150.1"), "pkey-gnn": ("657.3", "556.8"), "transporter-cnn": ("263.7", "14.9")},
    "BattleZone": {"pkey-cnn": ("10266.7", "3272.1"), "pkey-gnn": ("12566.7", "3297.9"), "transporter-cnn": None},
}
PAPER_NOISY = {
    "Seaquest": {"transporter-cnn": ("357.3", "99.10"), "pkey-cnn": ("562.0", "114.78")},
    "MsPacman": {"transporter-cnn": ("470.0", "212.90"), "pkey-cnn": ("574.7", "290.07")},
}
PAPER_K = {5: ("1004.3", "319.15"), 7: ("1038.5", "417.1"), 10: ("1003.3", "313.07")}
PAPER_K_TRANSPORTER = {5: ("923.0", "433.95"), 7: ("983.0", "806.3"), 10: ("907.0", "317.41")}
VARIANT_NAMES = {"pkey-cnn": "PKey-CNN", "pkey-gnn": "PKey-GNN", "transporter-cnn": "Transporter-CNN"}
GAMES = ["MsPacman", "Seaquest", "Frostbite", "BattleZone"]
TIMING_PHASES = [
    ("pretrain_collect_s", "collect pre-training frames"),
    ("pretrain_train_s", "pre-train the keypoint model"),
    ("acting_keypoints_s", "acting: keypoint front end"),
    ("acting_other_s", "acting: agent, emulators, writer"),
    ("learning_s", "learner updates"),
    ("learning_batch_s", "&nbsp;&nbsp;of which: batch to tensors"),
    ("learning_features_s", "&nbsp;&nbsp;of which: front-end features of the sampled frames"),
    ("learning_online_s", "&nbsp;&nbsp;of which: online network forward"),
    ("learning_target_s", "&nbsp;&nbsp;of which: target network forward, targets, loss"),
    ("learning_backward_s", "&nbsp;&nbsp;of which: backward, clipping, Adam"),
    ("evaluation_s", "periodic evaluations"),
    ("final_evaluation_s", "final evaluation"),
    ("checkpoint_s", "checkpoints"),
]


def read_csv(path):
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", "NaN", "nan") else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def load_runs(root):
    runs = []
    for meta_path in sorted(root.glob("*/*/seed*/run.json")):
        d = meta_path.parent
        scores_path = d / "final_scores.json"
        if not scores_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        run = {
            "dir": d,
            "meta": meta,
            "scores": json.loads(scores_path.read_text()),
            "config": tomllib.loads((d / "config.toml").read_text()),
            "eval": read_csv(d / "eval.csv"),
            "metrics": read_csv(d / "metrics.csv"),
            "keypoints": None,
        }
        kp = d / f"keypoints-{meta['noise']}.json"
        if kp.is_file():
            run["keypoints"] = json.loads(kp.read_text())
        runs.append(run)
    return runs


def load_random(root):
    """Random-policy game returns per (game, noise): each seed's mean over its games."""
    found = {}
    for meta_path in sorted(root.glob("random/*/seed*/run.json")):
        summary = meta_path.parent / "summary.json"
        if not summary.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        value = json.loads(summary.read_text()).get("mean_game_return")
        if value is not None:
            found.setdefault((meta["game"], meta["noise"]), []).append(value)
    return found


def mean_std(values):
    if not values:
        return None
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / len(values)) if len(values) > 1 else 0.0
    return m, s


def fmt(ms, digits=1):
    if ms is None:
        return "—"
    if isinstance(ms[0], str):
        return f"{ms[0]} ({ms[1]})"
    return f"{ms[0]:.{digits}f} ({ms[1]:.{digits}f})"


def source(runs):
    """Which machine produced a set of runs: the learner device, the GPU name or the CPU count."""
    kinds = set()
    for r in runs:
        device = r["scores"].get("device", "")
        gpu = r["meta"].get("gpu", "")
        if device.startswith("Cuda"):
            kinds.add(f"GPU ({gpu or device})")
        else:
            kinds.add(f"CPU ({r['meta'].get('host_cpus', '?')} cores)")
    return ", ".join(sorted(kinds)) if kinds else "—"


def cell(runs, experiment, game=None, variant=None, noise="none", k=None):
    return [
        r
        for r in runs
        if r["meta"]["experiment"] == experiment
        and (game is None or r["meta"]["game"] == game)
        and (variant is None or r["meta"]["variant"] == variant)
        and r["meta"]["noise"] == noise
        and (k is None or r["meta"]["num_keypoints"] == k)
    ]


def k_cell(runs, k):
    """MsPacman PKey-CNN runs with K keypoints: the ablation's own, or for the reference K = 7 the main table's."""
    own = cell(runs, "keypoints", "MsPacman", "pkey-cnn", k=k)
    return own or [r for r in cell(runs, "main", "MsPacman", "pkey-cnn") if r["meta"]["num_keypoints"] == k]


def score_list(values):
    """mean (std) [runs]; a single run shows no std (it would be over one value)."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f} [1]"
    return f"{fmt(mean_std(values))} [{len(values)}]"


def score_cell(rs):
    return score_list([r["scores"]["score"] for r in rs])


def flatten(table, prefix=""):
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# Keys a run sets on purpose (the cell's identity) or that name files: not deviations.
IDENTITY = {"env.game", "env.noise", "keypoints.model", "agent.encoder", "permakey.num_keypoints",
            "transporter.num_keypoints", "run.seed", "run.out_dir", "run.name", "device"}


def deviations(runs, reference):
    """Config values that differ from the reference protocol, with the set of values runs used."""
    ref = flatten(reference)
    found = {}
    for r in runs:
        for key, value in flatten(r["config"]).items():
            if key in IDENTITY or key.startswith(("logging.", "metrics.", "security.", "replay_server.", "keypoint_server.", "learner_server.", "cluster.")):
                continue
            if key.endswith((".progress", ".log_every", ".preview_every", ".checkpoint_every")) or key == "collect.record_steps":
                continue
            if key in ref and ref[key] != value:
                found.setdefault(key, (ref[key], set()))[1].add(json.dumps(value))
    return found


def svg_curves(path, title, series, ylabel="greedy evaluation return", floor=None):
    """A small line plot: series = [(label, [(x, y), ...])]; one colour per series; `floor`, if
    given, a dashed grey line (the random policy's return)."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    w, h, left, right, top, bottom = 560, 300, 60, 150, 30, 40
    points = [p for _, pts in series for p in pts if not math.isnan(p[1])]
    if not points:
        return False
    xmax = max(x for x, _ in points) or 1
    ys = [y for _, y in points] + ([floor] if floor is not None else [])
    ymin = min(0.0, min(ys))
    ymax = max(ys)
    if ymax <= ymin:
        ymax = ymin + 1
    sx = lambda x: left + (w - left - right) * x / xmax
    sy = lambda y: top + (h - top - bottom) * (1 - (y - ymin) / (ymax - ymin))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{left}" y="18" font-size="13">{title}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
             f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle">agent steps</text>',
             f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" text-anchor="middle">{ylabel}</text>']
    for i in range(5):
        yv = ymin + (ymax - ymin) * i / 4
        xv = xmax * i / 4
        parts.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.0f}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - bottom + 14}" text-anchor="middle">{xv:.0f}</text>')
    if floor is not None:
        parts.append(f'<line x1="{left}" y1="{sy(floor):.1f}" x2="{w - right}" y2="{sy(floor):.1f}" stroke="#888" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{w - right + 10}" y="{sy(floor) + 4:.1f}" fill="#666">random policy</text>')
    for i, (label, pts) in enumerate(series):
        colour = colours[i % len(colours)]
        pts = [(x, y) for x, y in pts if not math.isnan(y)]
        if not pts:
            continue
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        ly = top + 14 * i + 10
        parts.append(f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 30}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{w - right + 34}" y="{ly + 4}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return True


def curve(rs):
    """Mean over seeds of the greedy evaluation means by agent step (periodic evals + final)."""
    by_step = {}
    for r in rs:
        for row in r["eval"]:
            by_step.setdefault(int(row["agent_steps"]), []).append(row["mean"])
        final = r["scores"]
        by_step.setdefault(int(final["agent_steps"]), [])
        if not any(int(row["agent_steps"]) == int(final["agent_steps"]) for row in r["eval"]):
            by_step[int(final["agent_steps"])].append(final["score"])
    return [(x, sum(v) / len(v)) for x, v in sorted(by_step.items()) if v]


def keypoint_row(rs):
    """Mean over a cell's runs of the model's P@8, R@8, jitter and of the baselines' R@8."""
    reports = [dict(r["keypoints"]["reports"]) for r in rs if r["keypoints"]]
    if not reports:
        return None
    def score(method, radius, key):
        vals = [next(s[key] for s in rep[method]["scores"] if s["radius"] == radius) for rep in reports if method in rep]
        return sum(vals) / len(vals) if vals else math.nan
    jitter = [rep["model"]["temporal_jitter"] for rep in reports]
    return {
        "p8": score("model", 8.0, "precision"),
        "r8": score("model", 8.0, "recall"),
        "jitter": sum(jitter) / len(jitter),
        "random_r8": score("random", 8.0, "recall"),
        "grid_r8": score("grid", 8.0, "recall"),
        "diff_r8": score("frame_difference", 8.0, "recall"),
        "n": len(reports),
    }


def feature_cache_section(runs, w):
    """Runs with the learner's feature cache (their timing counts cached frames) against runs of the
    same cells without it: wall time and learner seconds per update, side by side."""
    cached = lambda r: "learning_features_computed" in ((r["scores"].get("timing") or {}))
    cells = {}
    for r in runs:
        if r["scores"].get("updates"):
            cells.setdefault((r["meta"]["experiment"], r["meta"]["cell"]), ([], []))[1 if cached(r) else 0].append(r)
    both = {k: v for k, v in cells.items() if v[0] and v[1]}
    with_cache = [r for v in cells.values() for r in v[1]]
    if not with_cache:
        return
    hits = sum(r["scores"]["timing"].get("learning_features_cached", 0) for r in with_cache)
    computed = sum(r["scores"]["timing"].get("learning_features_computed", 0) for r in with_cache)
    w("### The learner's feature cache")
    w("")
    w(f"{len(with_cache)} runs had the learner's feature cache (`learner.feature_cache_mib`): of their {hits + computed} sampled")
    w(f"valid frames, {hits} ({100 * hits / max(1, hits + computed):.1f}%) took their front-end features from the cache and {computed} were computed.")
    if not both:
        w("")
        return
    def per(group, key):
        total = sum((r["scores"].get("timing") or {}).get(key, 0.0) for r in group)
        return total / max(1, sum(r["scores"]["updates"] for r in group))
    def wall(group):
        return sum(r["scores"].get("wall_seconds", 0.0) for r in group) / len(group)
    before = [r for v in both.values() for r in v[0]]
    after = [r for v in both.values() for r in v[1]]
    w(f"The {len(both)} cells with runs both without it (earlier code) and with it, per update and per run:")
    w("")
    w("| | without the cache | with the cache | ratio |")
    w("|---|---:|---:|---:|")
    def with_encoder(encoder):  # runs whose cell is <game>-<keypoints>-<encoder>[...]
        return lambda g: [r for r in g if r["meta"]["cell"].split("-")[2:3] == [encoder]]
    gnn, cnn = with_encoder("gnn"), with_encoder("cnn")
    for label, f in [
        ("runs", lambda g: len(g)),
        ("features of the sampled frames, s per update", lambda g: per(g, "learning_features_s")),
        ("whole learner update, s per update", lambda g: per(g, "learning_s")),
        ("&nbsp;&nbsp;of which the GNN-encoder cells", lambda g: per(gnn(g), "learning_s")),
        ("&nbsp;&nbsp;of which the CNN-encoder cells", lambda g: per(cnn(g), "learning_s")),
        ("wall time of a run (pre-training excluded), s", wall),
    ]:
        if "GNN" in label and not gnn(after) or "CNN" in label and not cnn(after):
            continue
        a, b = f(before), f(after)
        ratio = f"{a / b:.2f}x" if label != "runs" and b > 0 else ""
        fmt = (lambda x: f"{x}") if label == "runs" else (lambda x: f"{x:.3f}" if x < 10 else f"{x:.0f}")
        w(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
    w("")
    w("The two groups ran at different times on a shared machine (absolute seconds move with its load); the")
    w("same cells, configs and budgets, and the ratio of the features phase, are what compare.")
    w("These runs' cache (before e755716) handed the CNN encoder NCHW maps where the uncached path gives it")
    w("channels-last ones, on which it is ~30% faster: hence the CNN cells' slower update. The cache now keeps")
    w("the layout; BENCHMARKS.md (\"Where a run's time goes\", 6) has the bench and an end-to-end run after the fix.")
    w("")


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/runs")
    repo = Path(__file__).resolve().parent.parent
    runs = load_runs(root)
    random_policy = load_random(root)
    rnd = lambda game, noise="none": score_list(random_policy.get((game, noise), []))
    plots = root.parent / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    reference = tomllib.loads((repo / "config" / "example.toml").read_text())
    out = []
    w = out.append
    w("# Results: the paper's Atari experiments run with this system (issue 11)")
    w("")
    w("Generated by `scripts/results_report.py results/runs > RESULTS.md` from the files that")
    w("`scripts/results-runs.sh` (`make results`) copies for every run to `results/runs/<experiment>/<cell>/seed<N>/`:")
    w("the resolved `config.toml`, `metrics.csv`, `eval.csv`, `final_scores.json` (score, per-phase timing,")
    w("device), the keypoint metric of the checkpoint the agent used (`keypoints-<noise>.json`) and `run.json`")
    w("(the exact command, host, commit, wall time). Scores are the final greedy evaluation of each run (the")
    w("median evaluation seed's mean return, spec 8); a cell shows mean (std) over its runs, with the number")
    w("of runs in brackets (std: the population standard deviation over the runs, numpy's default; a single")
    w("run has no std). Paper figures are the poster's (mean (std) over the paper's seeds). \"Random\" is")
    w("the uniformly random policy's mean whole-game return on the same environments (`random` experiment),")
    w("the floor every score is read against.")
    w("")
    if not runs:
        w("No runs yet: run `make results`.")
        print("\n".join(out))
        return
    profiles = sorted({r["meta"]["profile"] for r in runs})
    steps = sorted({r["scores"]["agent_steps"] for r in runs})
    pretrain = sorted({r["scores"].get("keypoint_pretrain_frames") or 0 for r in runs})
    w(f"**Produced by:** {source(runs)}; profile {', '.join(f'`{p}`' for p in profiles)}; "
      f"{', '.join(str(s) for s in steps)} agent steps of RL per run, {', '.join(str(p) for p in pretrain)} "
      f"random-policy frames of keypoint pre-training per run; {len(runs)} runs.")
    w("")
    budget_ratio = 100_000 / max(steps)
    if budget_ratio > 1.01:
        w(f"> **These are not the paper's numbers and should not be compared with them as such.** Every run here")
        w(f"> had {budget_ratio:.0f}x fewer agent steps than Atari-100k, smaller networks and a shorter keypoint")
        w("> pre-training (the deviations below), because the machine that produced them is a shared 2-core CPU")
        w("> with no GPU. They show that the whole protocol runs end to end and what it reaches at this budget;")
        w("> the paper's column is there for the layout the GPU runs (`CONFIG=config/example.toml DEVICE=cuda`) will fill.")
        w("")

    # Against the floor: which cells beat the random policy on their environments.
    above, total = [], 0
    for r_cells in {(r["meta"]["experiment"], r["meta"]["cell"]): None for r in runs}:
        rs = [r for r in runs if (r["meta"]["experiment"], r["meta"]["cell"]) == r_cells]
        floor = random_policy.get((rs[0]["meta"]["game"], rs[0]["meta"]["noise"]))
        if not floor:
            continue
        total += 1
        if mean_std([r["scores"]["score"] for r in rs])[0] > mean_std(floor)[0]:
            above.append(f"{r_cells[0]}/{r_cells[1]}")
    if total:
        w(f"**Against the random policy:** {len(above)} of {total} run cells score above it on their environments"
          + (f" ({', '.join(above)})." if above else "."))
        w("")

    # Main table.
    w("## Atari-100k table (poster: \"Atari RL Quantitative Results\")")
    w("")
    w("| game | random | PKey-CNN (ours) | PKey-CNN (paper) | PKey-GNN (ours) | PKey-GNN (paper) | Transporter-CNN (ours) | Transporter re-imp. (paper) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for game in GAMES:
        row = [game, rnd(game)]
        for variant in ["pkey-cnn", "pkey-gnn", "transporter-cnn"]:
            row.append(score_cell(cell(runs, "main", game, variant)))
            row.append(fmt(PAPER_MAIN[game][variant]))
        w("| " + " | ".join(row) + " |")
    w("")
    w(f"Source: {source(cell(runs, 'main'))}.")
    w("")

    # Noisy Atari.
    w("## Noisy Atari (poster: \"More RL Results\", distractor bars)")
    w("")
    w("| game | noise | random | Transporter-CNN (ours) | Transporter re-imp. (paper) | PKey-CNN (ours) | PKey-CNN (paper) |")
    w("|---|---|---:|---:|---:|---:|---:|")
    for game in ["Seaquest", "MsPacman"]:
        clean = [game, "none", rnd(game), score_cell(cell(runs, "main", game, "transporter-cnn")), fmt(PAPER_MAIN[game]["transporter-cnn"]),
                 score_cell(cell(runs, "main", game, "pkey-cnn")), fmt(PAPER_MAIN[game]["pkey-cnn"])]
        noisy = [game, "both bars", rnd(game, "both"), score_cell(cell(runs, "noisy", game, "transporter-cnn", "both")), fmt(PAPER_NOISY[game]["transporter-cnn"]),
                 score_cell(cell(runs, "noisy", game, "pkey-cnn", "both")), fmt(PAPER_NOISY[game]["pkey-cnn"])]
        w("| " + " | ".join(clean) + " |")
        w("| " + " | ".join(noisy) + " |")
    w("")
    w(f"Source: {source(cell(runs, 'noisy', noise='both'))}. The clean rows repeat the main table's cells.")
    w("")

    # Keypoint-count ablation.
    w("## Number of keypoints, MsPacman (poster: keypoint ablation)")
    w("")
    w(f"Random policy on MsPacman: {rnd('MsPacman')}.")
    w("")
    w("| K | PKey-CNN (ours) | PKey-CNN (paper) | Transporter re-imp. (paper) |")
    w("|---:|---:|---:|---:|")
    for k in [5, 7, 10]:
        w(f"| {k} | {score_cell(k_cell(runs, k))} | {fmt(PAPER_K[k])} | {fmt(PAPER_K_TRANSPORTER[k])} |")
    w("")
    w(f"Source: {source(cell(runs, 'keypoints'))}. K = 7 is the main table's MsPacman PKey-CNN cell (the same")
    w("configuration; the runner does not run it twice). The issue asks for the PKey-CNN agent here; the")
    w("poster's Transporter column is shown for reference.")
    w("")

    # Learning curves.
    w("## Learning curves")
    w("")
    w("Greedy evaluation return (mean over a cell's runs) against agent steps: the periodic evaluations")
    w("of `eval.csv` and the final score; the dashed line is the random policy. Plots are in `results/plots/`.")
    w("")
    floor_of = lambda game, noise="none": mean_std(random_policy[(game, noise)])[0] if random_policy.get((game, noise)) else None
    groups = [(f"main-{g}", f"{g}: main table", [(VARIANT_NAMES[v], cell(runs, "main", g, v)) for v in VARIANT_NAMES], floor_of(g)) for g in GAMES]
    groups += [(f"noisy-{g}", f"{g}: both distractor bars", [(VARIANT_NAMES[v], cell(runs, "noisy", g, v, "both")) for v in ["pkey-cnn", "transporter-cnn"]], floor_of(g, "both")) for g in ["Seaquest", "MsPacman"]]
    groups.append(("keypoints-MsPacman", "MsPacman PKey-CNN: number of keypoints", [(f"K = {k}", k_cell(runs, k)) for k in [5, 7, 10]], floor_of("MsPacman")))
    for name, title, series, floor in groups:
        drawn = svg_curves(plots / f"{name}.svg", title, [(label, curve(rs)) for label, rs in series if rs], floor=floor)
        if drawn:
            w(f"![{title}](results/plots/{name}.svg)")
            w("")

    # Keypoint metric of the checkpoints used.
    w("## Keypoint metric of the checkpoints the agents used")
    w("")
    w("Each run's own keypoint model, scored with the RAM-grounded metric of KEYPOINTS.md on the run's")
    w("observations (its noise setting), with the object-blind baselines on the same frames: precision and")
    w("recall within 8 px on the 84x84 frame, jitter in px between consecutive frames. Mean over the cell's runs.")
    w("Pre-training is a function of its seed and config, so the PKey-CNN and PKey-GNN runs of a game and")
    w("seed share one keypoint model (their rows agree): the two agents differ only in the encoder.")
    w("")
    rows = []
    seen = []
    for r in runs:
        key = (r["meta"]["experiment"], r["meta"]["cell"])
        if key not in seen:
            seen.append(key)
    for experiment, name in seen:
        rs = [r for r in runs if (r["meta"]["experiment"], r["meta"]["cell"]) == (experiment, name)]
        row = keypoint_row(rs)
        if row is None:
            continue
        rows.append(f"| {experiment}/{name} | {row['n']} | {row['p8']:.3f} | {row['r8']:.3f} | {row['jitter']:.2f} | "
                    f"{row['random_r8']:.3f} | {row['grid_r8']:.3f} | {row['diff_r8']:.3f} |")
    if rows:
        w("| run cell | runs | P@8 | R@8 | jitter | R@8 random | R@8 grid | R@8 frame diff. |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        out.extend(rows)
    else:
        w("No keypoint scores in these runs.")
    w("")

    # Where the time goes.
    w("## Where the time goes (issue 11, item 4)")
    w("")
    w("Per-phase wall time from `final_scores.json` (`timing`), summed over all runs; in the threads mode")
    w("acting and learning overlap, so the phases can add up to more than the wall time.")
    w("")
    totals = {}
    wall = 0.0
    for r in runs:
        t = r["scores"].get("timing") or {}
        for key, _ in TIMING_PHASES:
            if key == "acting_other_s":
                value = t.get("acting_s", 0.0) - t.get("acting_keypoints_s", 0.0)
            else:
                value = t.get(key, 0.0)
            totals[key] = totals.get(key, 0.0) + value
        wall += t.get("pretrain_collect_s", 0.0) + t.get("pretrain_train_s", 0.0) + r["scores"].get("wall_seconds", 0.0)
        totals["actor_waiting_s"] = totals.get("actor_waiting_s", 0.0) + t.get("actor_waiting_s", 0.0)
        totals["learner_idle_s"] = totals.get("learner_idle_s", 0.0) + t.get("learner_idle_s", 0.0)
    if wall > 0:
        w("| phase | seconds (all runs) | share of wall time |")
        w("|---|---:|---:|")
        for key, label in TIMING_PHASES:
            if key.startswith("learning_") and totals[key] == 0:
                continue  # runs of a version that did not split the update
            w(f"| {label} | {totals[key]:.0f} | {100 * totals[key] / wall:.0f}% |")
        w(f"| (actor waiting for the learner) | {totals['actor_waiting_s']:.0f} | {100 * totals['actor_waiting_s'] / wall:.0f}% |")
        w(f"| (learner waiting for the actor) | {totals['learner_idle_s']:.0f} | {100 * totals['learner_idle_s'] / wall:.0f}% |")
        w(f"| **wall time of the runs** | {wall:.0f} | 100% |")
        w("")
        w(f"Source: {source(runs)}. Absolute seconds from a shared machine are indicative only; the shares are the")
        w("profile. The full single-seed Atari-100k timing (goal: under 10 minutes on one H100) is a GPU measurement: a run on")
        w("an H200 cut at 400 s (BENCHMARKS.md, `results/gpu/2026-12-04-h200/`) projected ~17.7 minutes before the learner's")
        w("update was cut down, the embedded parameter hand-over kept on the device and periodic evaluations moved off the")
        w("training thread (`train.background_eval`); not re-measured on a GPU since.")
        w("")
        feature_cache_section(runs, w)

    # Deviations.
    w("## Deviations from the paper's protocol")
    w("")
    w("Every value of the runs' resolved configs that differs from the reference protocol")
    w("(`config/example.toml`: Atari-100k, the reference's layer sizes and schedule; spec sections 7-9):")
    w("")
    found = deviations(runs, reference)
    if found:
        w("| setting | reference | these runs |")
        w("|---|---|---|")
        for key in sorted(found):
            ref, used = found[key]
            note = " (the preset's budget: 100000 for atari100k)" if key == "train.agent_steps" and ref == 0 else ""
            w(f"| `{key}` | `{json.dumps(ref)}`{note} | {', '.join(f'`{u}`' for u in sorted(used))} |")
    else:
        w("None: every run used the reference protocol.")
    w("")
    seeds = sorted({r["meta"]["seed"] for r in runs})
    w("Beyond the config:")
    w("")
    w(f"- Seeds: {', '.join(str(s) for s in seeds)} (the issue asks for at least 3 per cell; cells show how many ran).")
    w("- Each run pre-trains its own keypoint model, with the run's seed, on its own random-policy frames;")
    w("  those frames are not counted in the RL budget (spec 9b).")
    w("- The paper's agents ran in its TensorFlow code; these are this project's Rust/libtorch agents")
    w("  with the reference's architecture and hyperparameters (spec 7), in the embedded mode.")
    w("- Evaluation games are played on parallel environments (the reference plays them one after another).")
    w("  Binaries before a6fe14b counted the first games to finish across the environments, which favours")
    w("  short games; since a6fe14b each environment counts a fixed share of its games. With")
    w("  `config/results-cpu.toml` (3 games on 3 environments, each at most 1000 agent steps) the old rule")
    w("  dropped a game only when one environment finished two games before another finished its first.")
    w("")
    w("## Every run")
    w("")
    w("| run | seed | score | best periodic | agent steps | updates | wall s | device | commit |")
    w("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in runs:
        s, m = r["scores"], r["meta"]
        best = s.get("best_periodic_eval_mean")
        w(f"| {m['experiment']}/{m['cell']} | {m['seed']} | {s['score']:.1f} | {'—' if best is None else f'{best:.1f}'} | "
          f"{s['agent_steps']} | {s['updates']} | {m.get('run_wall_s', 0)} | {s.get('device', '?')} | {m.get('commit', '?')} |")
    w("")
    w("Commands: each run's `run.json` holds the exact command (`command`, `keypoint_eval_command`).")
    print("\n".join(out))


if __name__ == "__main__":
    main()
