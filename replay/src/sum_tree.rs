//! A fixed-capacity sum tree for proportional (prioritised) sampling.
//!
//! Leaves hold non-negative masses; every inner node holds the sum of its two children, so the
//! root is the total mass and [`SumTree::find`] descends from the root to the leaf whose
//! cumulative range `[sum of the leaves before it, that sum + its mass)` contains a given mass,
//! in `O(log capacity)`. Inner nodes are recomputed from their children on every [`SumTree::set`]
//! (never adjusted by a delta), so floating-point error cannot accumulate over updates.

use crate::ReplayError;

/// A binary sum tree over `capacity` leaves, stored as an implicit heap (node 1 is the root,
/// node `i` has children `2i` and `2i + 1`, leaves start at a power of two).
#[derive(Debug, Clone, PartialEq)]
pub struct SumTree {
    capacity: usize,
    first_leaf: usize,
    nodes: Vec<f64>,
}

impl SumTree {
    /// Creates a tree with `capacity` leaves, all of mass zero.
    ///
    /// # Panics
    /// If `capacity` is zero.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "sum tree capacity must be positive");
        let first_leaf = capacity.next_power_of_two();
        Self {
            capacity,
            first_leaf,
            nodes: vec![0.0; 2 * first_leaf],
        }
    }

    /// Returns the number of leaves.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the mass of leaf `index`.
    ///
    /// Rejects a NaN, infinite or negative `mass` and an index past the capacity; the tree is
    /// unchanged on error.
    pub fn set(&mut self, index: usize, mass: f64) -> Result<(), ReplayError> {
        if index >= self.capacity {
            return Err(ReplayError::IndexOutOfRange {
                index,
                capacity: self.capacity,
            });
        }
        if !mass.is_finite() || mass < 0.0 {
            return Err(ReplayError::InvalidPriority { value: mass });
        }
        // `-0.0 >= 0.0` holds; store a positive zero so sums print cleanly.
        let mass = if mass == 0.0 { 0.0 } else { mass };
        let mut node = self.first_leaf + index;
        self.nodes[node] = mass;
        node /= 2;
        while node >= 1 {
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1];
            node /= 2;
        }
        Ok(())
    }

    /// Returns the mass of leaf `index`.
    ///
    /// # Panics
    /// If `index >= capacity`.
    pub fn get(&self, index: usize) -> f64 {
        assert!(
            index < self.capacity,
            "sum tree index {index} out of range for capacity {}",
            self.capacity
        );
        self.nodes[self.first_leaf + index]
    }

    /// Returns the sum of all leaf masses.
    pub fn total(&self) -> f64 {
        self.nodes[1]
    }

    /// Returns the leaf whose cumulative range contains `mass`, or `None` when the total is zero
    /// or `mass` is not finite.
    ///
    /// Leaf `i` owns `[c_i, c_i + m_i)` where `c_i` is the sum of the masses of leaves `0..i`;
    /// a leaf of mass zero owns an empty range and is never returned. `mass` is clamped to
    /// `[0, total]`; a mass at or past the total (which rounding in a caller's
    /// `uniform * total` can produce) returns the last leaf with positive mass.
    pub fn find(&self, mass: f64) -> Option<usize> {
        let total = self.total();
        if total <= 0.0 || !mass.is_finite() {
            return None;
        }
        let mut remaining = mass.clamp(0.0, total);
        let mut node = 1;
        // Invariant: `self.nodes[node] > 0`, so the descent never enters an empty subtree.
        while node < self.first_leaf {
            let left = 2 * node;
            let left_mass = self.nodes[left];
            let right_mass = self.nodes[left + 1];
            if right_mass <= 0.0 || (left_mass > 0.0 && remaining < left_mass) {
                node = left;
            } else {
                remaining -= left_mass;
                node = left + 1;
            }
        }
        debug_assert!(self.nodes[node] > 0.0);
        Some(node - self.first_leaf)
    }

    /// Iterates over the leaf masses in index order.
    pub fn leaves(&self) -> impl Iterator<Item = f64> + '_ {
        self.nodes[self.first_leaf..self.first_leaf + self.capacity]
            .iter()
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tree_with(masses: &[f64]) -> SumTree {
        let mut tree = SumTree::new(masses.len());
        for (index, &mass) in masses.iter().enumerate() {
            tree.set(index, mass).unwrap();
        }
        tree
    }

    #[test]
    fn hand_computed_totals_and_lookups() {
        // Leaves 1, 0, 3, 2, 4: cumulative ranges [0,1) [1,1) [1,4) [4,6) [6,10).
        let tree = tree_with(&[1.0, 0.0, 3.0, 2.0, 4.0]);
        assert_eq!(tree.total(), 10.0);
        assert_eq!(tree.get(2), 3.0);
        assert_eq!(tree.find(0.0), Some(0));
        assert_eq!(tree.find(0.999), Some(0));
        assert_eq!(tree.find(1.0), Some(2), "leaf 1 has mass zero");
        assert_eq!(tree.find(3.5), Some(2));
        assert_eq!(tree.find(4.0), Some(3));
        assert_eq!(tree.find(5.99), Some(3));
        assert_eq!(tree.find(6.0), Some(4));
        assert_eq!(tree.find(9.99), Some(4));
        assert_eq!(
            tree.find(10.0),
            Some(4),
            "mass == total clamps to the last leaf"
        );
        assert_eq!(tree.find(25.0), Some(4));
        assert_eq!(tree.find(-3.0), Some(0));
        assert_eq!(tree.find(f64::NAN), None);
    }

    #[test]
    fn trailing_zero_leaves_are_skipped_at_the_top_of_the_range() {
        let tree = tree_with(&[0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
        for mass in [0.0, 1.0, 1.999, 2.0, 7.0] {
            assert_eq!(tree.find(mass), Some(1), "mass {mass}");
        }
    }

    #[test]
    fn updates_replace_rather_than_accumulate() {
        let mut tree = tree_with(&[1.0, 2.0, 3.0]);
        tree.set(1, 10.0).unwrap();
        assert_eq!(tree.total(), 14.0);
        tree.set(1, 0.0).unwrap();
        assert_eq!(tree.total(), 4.0);
        assert_eq!(tree.find(1.0), Some(2));
    }

    #[test]
    fn empty_tree_finds_nothing() {
        let tree = SumTree::new(7);
        assert_eq!(tree.total(), 0.0);
        assert_eq!(tree.find(0.0), None);
    }

    #[test]
    fn invalid_masses_and_indices_are_rejected_without_change() {
        let mut tree = tree_with(&[1.0, 2.0]);
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert!(matches!(
                tree.set(0, bad),
                Err(ReplayError::InvalidPriority { .. })
            ));
        }
        assert!(matches!(
            tree.set(2, 1.0),
            Err(ReplayError::IndexOutOfRange {
                index: 2,
                capacity: 2
            })
        ));
        assert_eq!(tree.total(), 3.0);
    }

    #[test]
    #[should_panic(expected = "capacity must be positive")]
    fn zero_capacity_panics() {
        let _ = SumTree::new(0);
    }

    /// Cumulative range `[start, end)` of each leaf, summed left to right.
    fn cumulative_ranges(masses: &[f64]) -> Vec<(f64, f64)> {
        let mut start = 0.0;
        masses
            .iter()
            .map(|&mass| {
                let range = (start, start + mass);
                start += mass;
                range
            })
            .collect()
    }

    proptest! {
        #[test]
        fn total_is_the_sum_of_leaves_after_any_updates(
            capacity in 1usize..40,
            updates in prop::collection::vec((0usize..40, 0.0f64..1e3), 0..200),
        ) {
            let mut tree = SumTree::new(capacity);
            let mut model = vec![0.0; capacity];
            for (index, mass) in updates {
                let index = index % capacity;
                tree.set(index, mass).unwrap();
                model[index] = mass;
            }
            let sum: f64 = model.iter().sum();
            prop_assert!((tree.total() - sum).abs() <= 1e-9 * sum.max(1.0));
            prop_assert_eq!(tree.leaves().collect::<Vec<_>>(), model);
        }

        /// With integer masses every sum is exact, so containment can be checked exactly.
        #[test]
        fn find_returns_the_leaf_whose_range_contains_the_mass(
            masses in prop::collection::vec(prop_oneof![Just(0u32), 1u32..1000], 1..60),
            fractions in prop::collection::vec(0.0f64..1.0, 1..50),
        ) {
            let masses: Vec<f64> = masses.into_iter().map(f64::from).collect();
            let tree = tree_with(&masses);
            let ranges = cumulative_ranges(&masses);
            let total: f64 = masses.iter().sum();
            prop_assert_eq!(tree.total(), total);
            for fraction in fractions {
                let mass = (fraction * total).floor();
                match tree.find(mass) {
                    None => prop_assert_eq!(total, 0.0),
                    Some(index) => {
                        let (start, end) = ranges[index];
                        prop_assert!(masses[index] > 0.0, "zero-mass leaf {} returned", index);
                        prop_assert!(start <= mass && mass < end,
                            "mass {} not in leaf {}'s range [{}, {})", mass, index, start, end);
                    }
                }
            }
        }

        /// With arbitrary real masses: never a zero leaf, and containment up to rounding.
        #[test]
        fn find_never_returns_a_zero_leaf(
            masses in prop::collection::vec(prop_oneof![Just(0.0f64), 1e-6f64..1e6], 1..60),
            fractions in prop::collection::vec(0.0f64..=1.0, 1..50),
        ) {
            let tree = tree_with(&masses);
            let ranges = cumulative_ranges(&masses);
            let total = tree.total();
            for fraction in fractions {
                let mass = fraction * total;
                if let Some(index) = tree.find(mass) {
                    prop_assert!(masses[index] > 0.0);
                    let (start, end) = ranges[index];
                    let slack = 1e-9 * total;
                    prop_assert!(start - slack <= mass && mass <= end + slack);
                } else {
                    prop_assert_eq!(total, 0.0);
                }
            }
        }
    }
}
