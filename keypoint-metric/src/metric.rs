//! Pure keypoint metrics against ground-truth object positions, all in pixels of the 84x84
//! frame with points as (y, x).
//!
//! - precision@r: share of keypoints within `r` px (Euclidean) of some object;
//! - recall@r: share of objects with some keypoint within `r` px;
//! - temporal jitter: mean distance between keypoints of consecutive frames after a
//!   minimum-cost one-to-one matching (Hungarian algorithm, [`min_cost_assignment`]).
//!
//! Both rates are micro-averaged: counts are pooled over frames, then divided. Convention for
//! frames with zero objects: they carry no ground truth, so they are left out of precision
//! (their keypoints are neither right nor wrong) and add nothing to recall; they still count
//! for temporal jitter, which needs no ground truth. The report counts such frames.

use serde::{Deserialize, Serialize};

use crate::{KeypointMetricError, Result};

/// The radii of issue 6, in 84x84 pixels.
pub const DEFAULT_RADII: [f32; 2] = [4.0, 8.0];

fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

fn within(point: [f32; 2], others: &[[f32; 2]], radius: f32) -> bool {
    others.iter().any(|&other| distance(point, other) <= radius)
}

/// Number of `keypoints` within `radius` of some object.
pub fn keypoints_near_objects(keypoints: &[[f32; 2]], objects: &[[f32; 2]], radius: f32) -> usize {
    keypoints.iter().filter(|&&k| within(k, objects, radius)).count()
}

/// Number of `objects` with some keypoint within `radius`.
pub fn objects_found(keypoints: &[[f32; 2]], objects: &[[f32; 2]], radius: f32) -> usize {
    objects.iter().filter(|&&o| within(o, keypoints, radius)).count()
}

/// precision@r of one frame; `None` without keypoints or without objects (see module docs).
pub fn precision_at(keypoints: &[[f32; 2]], objects: &[[f32; 2]], radius: f32) -> Option<f32> {
    if keypoints.is_empty() || objects.is_empty() {
        return None;
    }
    Some(keypoints_near_objects(keypoints, objects, radius) as f32 / keypoints.len() as f32)
}

/// recall@r of one frame; `None` without objects.
pub fn recall_at(keypoints: &[[f32; 2]], objects: &[[f32; 2]], radius: f32) -> Option<f32> {
    if objects.is_empty() {
        return None;
    }
    Some(objects_found(keypoints, objects, radius) as f32 / objects.len() as f32)
}

/// Minimum-cost one-to-one assignment (Hungarian algorithm with row/column potentials,
/// O(rows^2 * cols)) for a `rows x cols` cost matrix in row-major order. Returns, for each row,
/// its column when `rows <= cols`; when `rows > cols` the matrix is transposed, so every column
/// gets a row and unassigned rows read `None`.
pub fn min_cost_assignment(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    debug_assert_eq!(cost.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    if rows > cols {
        let transposed: Vec<f64> = (0..cols).flat_map(|c| (0..rows).map(move |r| cost[r * cols + c])).collect();
        let column_to_row = min_cost_assignment(&transposed, cols, rows);
        let mut row_to_column = vec![None; rows];
        for (column, row) in column_to_row.into_iter().enumerate() {
            if let Some(row) = row {
                row_to_column[row] = Some(column);
            }
        }
        return row_to_column;
    }
    // 1-based potentials u (rows), v (cols); column_owner[j] = row matched to column j (0 = none)
    let (n, m) = (rows, cols);
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut column_owner = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for row in 1..=n {
        column_owner[0] = row;
        let mut j0 = 0usize;
        let mut min_slack = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = column_owner[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let reduced = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                if reduced < min_slack[j] {
                    min_slack[j] = reduced;
                    way[j] = j0;
                }
                if min_slack[j] < delta {
                    delta = min_slack[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[column_owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_slack[j] -= delta;
                }
            }
            j0 = j1;
            if column_owner[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            column_owner[j0] = column_owner[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assignment = vec![None; n];
    for j in 1..=m {
        if column_owner[j] != 0 {
            assignment[column_owner[j] - 1] = Some(j - 1);
        }
    }
    assignment
}

/// Distances of the matched keypoint pairs between two frames (Hungarian matching on Euclidean
/// distance; with different counts, the `min(len)` pairs of least total distance).
pub fn matched_displacements(previous: &[[f32; 2]], next: &[[f32; 2]]) -> Vec<f32> {
    let cost: Vec<f64> = previous.iter().flat_map(|&p| next.iter().map(move |&q| distance(p, q) as f64)).collect();
    min_cost_assignment(&cost, previous.len(), next.len())
        .into_iter()
        .enumerate()
        .filter_map(|(i, j)| j.map(|j| distance(previous[i], next[j])))
        .collect()
}

/// Scores at one radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadiusScores {
    pub radius: f32,
    /// Pooled precision over frames with objects; `None` when they hold no keypoints.
    pub precision: Option<f32>,
    /// Pooled recall; `None` when no frame has objects.
    pub recall: Option<f32>,
}

/// The metric over one sequence of frames (serialised as JSON for reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeypointMetricReport {
    pub frames: usize,
    /// Frames with zero objects: left out of precision and recall.
    pub frames_without_objects: usize,
    /// Keypoints in frames with objects (precision's denominator).
    pub keypoints_scored: usize,
    /// Objects over all frames (recall's denominator).
    pub objects_total: usize,
    pub scores: Vec<RadiusScores>,
    /// Mean matched keypoint displacement between consecutive frames, px; `None` without pairs.
    pub temporal_jitter: Option<f32>,
    /// Matched keypoint pairs behind `temporal_jitter`.
    pub matched_pairs: usize,
}

impl KeypointMetricReport {
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// Scores `keypoints[t]` (K_t x 2) against `objects[t]` (M_t x 2) for every frame `t` at each of
/// `radii`, plus the temporal jitter of the keypoints, all frames being one continuous clip.
/// Errors when the frame counts differ.
pub fn evaluate(keypoints: &[Vec<[f32; 2]>], objects: &[Vec<[f32; 2]>], radii: &[f32]) -> Result<KeypointMetricReport> {
    evaluate_clips(keypoints, objects, &[0], radii)
}

/// [`evaluate`] over frames made of several clips of consecutive frames: clip `i` starts at frame
/// `clip_starts[i]` (strictly increasing, the first 0 when there are frames). Temporal jitter
/// pairs only consecutive frames of the same clip, never the last frame of one clip with the first
/// of the next. Errors when the frame counts differ or the starts are not increasing and in range.
pub fn evaluate_clips(keypoints: &[Vec<[f32; 2]>], objects: &[Vec<[f32; 2]>], clip_starts: &[usize], radii: &[f32]) -> Result<KeypointMetricReport> {
    if keypoints.len() != objects.len() {
        return Err(KeypointMetricError::Shape(format!(
            "{} keypoint frames but {} object frames",
            keypoints.len(),
            objects.len()
        )));
    }
    let starts_ok = clip_starts.windows(2).all(|w| w[0] < w[1])
        && clip_starts.first().is_none_or(|&first| first == 0)
        && clip_starts.last().is_none_or(|&last| last < keypoints.len().max(1));
    if !starts_ok {
        return Err(KeypointMetricError::Shape(format!(
            "clip starts {clip_starts:?} must increase from 0 and lie within the {} frames",
            keypoints.len()
        )));
    }
    type FramePair<'a> = (&'a Vec<[f32; 2]>, &'a Vec<[f32; 2]>);
    let scored: Vec<FramePair> = keypoints.iter().zip(objects).filter(|(_, objects)| !objects.is_empty()).collect();
    let keypoints_scored: usize = scored.iter().map(|(k, _)| k.len()).sum();
    let objects_total: usize = objects.iter().map(Vec::len).sum();
    let scores = radii
        .iter()
        .map(|&radius| {
            let near: usize = scored.iter().map(|(k, o)| keypoints_near_objects(k, o, radius)).sum();
            let found: usize = scored.iter().map(|(k, o)| objects_found(k, o, radius)).sum();
            RadiusScores {
                radius,
                precision: (keypoints_scored > 0).then(|| near as f32 / keypoints_scored as f32),
                recall: (objects_total > 0).then(|| found as f32 / objects_total as f32),
            }
        })
        .collect();
    let clip_ends = clip_starts.iter().skip(1).copied().chain(std::iter::once(keypoints.len()));
    let displacements: Vec<f32> = clip_starts
        .iter()
        .zip(clip_ends)
        .flat_map(|(&start, end)| keypoints[start..end].windows(2).flat_map(|pair| matched_displacements(&pair[0], &pair[1])))
        .collect();
    let matched_pairs = displacements.len();
    Ok(KeypointMetricReport {
        frames: keypoints.len(),
        frames_without_objects: keypoints.len() - scored.len(),
        keypoints_scored,
        objects_total,
        scores,
        temporal_jitter: (matched_pairs > 0).then(|| displacements.iter().sum::<f32>() / matched_pairs as f32),
        matched_pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn precision_and_recall_by_hand() {
        // objects at (10,10) and (50,50); keypoints at distance 3 (3-4-5 triangle: 5), 0 and 30
        let objects = [[10.0, 10.0], [50.0, 50.0]];
        let keypoints = [[13.0, 14.0], [50.0, 50.0], [80.0, 80.0]];
        // r=4: only (50,50) is near -> precision 1/3; recall: (50,50) found, (10,10) at 5 px not -> 1/2
        assert!(close(precision_at(&keypoints, &objects, 4.0).unwrap(), 1.0 / 3.0));
        assert!(close(recall_at(&keypoints, &objects, 4.0).unwrap(), 0.5));
        // r=8: (13,14) is 5 px away -> precision 2/3, recall 1
        assert!(close(precision_at(&keypoints, &objects, 8.0).unwrap(), 2.0 / 3.0));
        assert!(close(recall_at(&keypoints, &objects, 8.0).unwrap(), 1.0));
    }

    #[test]
    fn empty_frames_follow_the_convention() {
        assert_eq!(precision_at(&[[1.0, 1.0]], &[], 4.0), None);
        assert_eq!(recall_at(&[[1.0, 1.0]], &[], 4.0), None);
        assert_eq!(precision_at(&[], &[[1.0, 1.0]], 4.0), None);
        assert_eq!(recall_at(&[], &[[1.0, 1.0]], 4.0), Some(0.0));
    }

    #[test]
    fn hungarian_beats_greedy_on_a_crossing_case() {
        // greedy picks (0,0)=1 first, then (1,1)=100: total 101; optimum (0,1)+(1,0) = 2+3 = 5
        let cost = [1.0, 2.0, 3.0, 100.0];
        assert_eq!(min_cost_assignment(&cost, 2, 2), vec![Some(1), Some(0)]);
    }

    #[test]
    fn hungarian_handles_rectangular_matrices() {
        // 2 rows x 3 cols: row 0 -> col 2 (1), row 1 -> col 0 (2); total 3
        let cost = [9.0, 9.0, 1.0, 2.0, 9.0, 9.0];
        assert_eq!(min_cost_assignment(&cost, 2, 3), vec![Some(2), Some(0)]);
        // 3 rows x 2 cols (transposed path): col 0 <- row 2 (1), col 1 <- row 0 (1); row 1 unmatched
        let cost = [5.0, 1.0, 7.0, 7.0, 1.0, 5.0];
        assert_eq!(min_cost_assignment(&cost, 3, 2), vec![Some(1), None, Some(0)]);
        assert_eq!(min_cost_assignment(&[], 0, 3), Vec::<Option<usize>>::new());
        assert_eq!(min_cost_assignment(&[], 2, 0), vec![None, None]);
    }

    #[test]
    fn hungarian_matches_brute_force_on_random_matrices() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..200 {
            let n = rng.random_range(1..=5);
            let cost: Vec<f64> = (0..n * n).map(|_| rng.random_range(0..20) as f64).collect();
            let assignment = min_cost_assignment(&cost, n, n);
            let total: f64 = assignment.iter().enumerate().map(|(i, j)| cost[i * n + j.unwrap()]).sum();
            let mut best = f64::INFINITY;
            let mut permutation: Vec<usize> = (0..n).collect();
            permute(&mut permutation, 0, &mut |p| {
                best = best.min(p.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum());
            });
            assert_eq!(total, best, "cost {cost:?}");
        }
    }

    fn permute(items: &mut Vec<usize>, start: usize, visit: &mut dyn FnMut(&[usize])) {
        if start == items.len() {
            visit(items);
            return;
        }
        for i in start..items.len() {
            items.swap(start, i);
            permute(items, start + 1, visit);
            items.swap(start, i);
        }
    }

    #[test]
    fn jitter_matches_swapped_keypoints() {
        // keypoints swap order between frames and each moves by 1 px: matching undoes the swap
        let previous = [[0.0, 0.0], [20.0, 20.0]];
        let next = [[21.0, 20.0], [0.0, 1.0]];
        let displacements = matched_displacements(&previous, &next);
        assert_eq!(displacements, vec![1.0, 1.0]);
    }

    #[test]
    fn evaluate_by_hand_with_an_empty_frame() {
        // frame 0: one object at (10,10), keypoints at (10,13) [3 px] and (40,40)
        // frame 1: no objects (skipped for precision/recall), keypoints moved by (0,6) and (0,0)
        // frame 2: two objects (10,10) and (60,60), keypoints (10,19) [dist 9] and (40,40)
        let keypoints = vec![
            vec![[10.0, 13.0], [40.0, 40.0]],
            vec![[10.0, 19.0], [40.0, 40.0]],
            vec![[10.0, 19.0], [40.0, 40.0]],
        ];
        let objects = vec![vec![[10.0, 10.0]], vec![], vec![[10.0, 10.0], [60.0, 60.0]]];
        let report = evaluate(&keypoints, &objects, &DEFAULT_RADII).unwrap();
        assert_eq!(report.frames, 3);
        assert_eq!(report.frames_without_objects, 1);
        assert_eq!(report.keypoints_scored, 4);
        assert_eq!(report.objects_total, 3);
        // r=4: 1 of 4 keypoints near, 1 of 3 objects found; r=8: unchanged (9 px > 8)
        for scores in &report.scores {
            assert!(close(scores.precision.unwrap(), 0.25));
            assert!(close(scores.recall.unwrap(), 1.0 / 3.0));
        }
        // pairs: (6 + 0) between frames 0-1, (0 + 0) between 1-2 -> 6 / 4
        assert_eq!(report.matched_pairs, 4);
        assert!(close(report.temporal_jitter.unwrap(), 1.5));
        let json = report.to_json().unwrap();
        let back: KeypointMetricReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn evaluate_rejects_mismatched_lengths() {
        assert!(evaluate(&[vec![]], &[], &DEFAULT_RADII).is_err());
    }

    #[test]
    fn jitter_does_not_cross_clip_boundaries() {
        // two clips of two frames: within clips the keypoint moves by 1 and by 2 px; across the
        // boundary (frame 1 -> 2) it jumps by 50 px, which must not count
        let keypoints = vec![vec![[0.0, 0.0]], vec![[0.0, 1.0]], vec![[50.0, 1.0]], vec![[52.0, 1.0]]];
        let objects = vec![vec![[0.0, 0.0]]; 4];
        let report = evaluate_clips(&keypoints, &objects, &[0, 2], &DEFAULT_RADII).unwrap();
        assert_eq!(report.matched_pairs, 2);
        assert!(close(report.temporal_jitter.unwrap(), 1.5));
        // as one clip the jump counts: (1 + 50 + 2) / 3
        let one_clip = evaluate(&keypoints, &objects, &DEFAULT_RADII).unwrap();
        assert!(close(one_clip.temporal_jitter.unwrap(), 53.0 / 3.0));
        // precision/recall do not depend on the clips: r=4 finds the object in frames 0 and 1
        assert!(close(report.scores[0].recall.unwrap(), 0.5));
        assert_eq!(report.scores, one_clip.scores);
        // single-frame clips give no pairs at all
        assert_eq!(evaluate_clips(&keypoints, &objects, &[0, 1, 2, 3], &DEFAULT_RADII).unwrap().temporal_jitter, None);
    }

    #[test]
    fn evaluate_clips_rejects_bad_starts() {
        let keypoints = vec![vec![[0.0, 0.0]]; 3];
        let objects = vec![vec![]; 3];
        for starts in [&[1usize][..], &[0, 2, 2], &[0, 3], &[0, 2, 1]] {
            let err = evaluate_clips(&keypoints, &objects, starts, &DEFAULT_RADII).unwrap_err().to_string();
            assert!(err.contains("clip starts"), "{err}");
        }
    }
}
