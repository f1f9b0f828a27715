//! Observation pre-processing as pure functions over caller-owned buffers (no allocation per frame):
//! palette lookup with the max over two frames, and area-interpolation resizing.

/// Converts two palette-index screens to colour through `palette` and keeps the pixel-wise max
/// (baselines `MaxAndSkipEnv` takes the max over RGB values, not over indices).
/// `out` holds `indices.len() * C` bytes.
pub fn palette_max<const C: usize>(first: &[u8], second: &[u8], palette: &[[u8; C]; 256], out: &mut [u8]) {
    debug_assert_eq!(first.len(), second.len());
    debug_assert_eq!(out.len(), first.len() * C);
    if C == 3 && !first.is_empty() {
        // RGB through 4-byte colours: one 4-byte max and store per pixel, whose fourth byte the
        // next pixel overwrites (the last pixel stores 3); indices 8 at a time
        let mut padded = [[0u8; 4]; 256];
        for (p, colour) in padded.iter_mut().zip(palette) {
            p.iter_mut().zip(colour).for_each(|(p, &c)| *p = c);
        }
        let max = |a: u8, b: u8| -> [u8; 4] {
            let (pa, pb) = (&padded[a as usize], &padded[b as usize]);
            [pa[0].max(pb[0]), pa[1].max(pb[1]), pa[2].max(pb[2]), pa[3].max(pb[3])]
        };
        let last = first.len() - 1;
        let (first8, first_rest) = first[..last].as_chunks::<8>();
        let (second8, _) = second[..last].as_chunks::<8>();
        for (i, (a8, b8)) in first8.iter().zip(second8).enumerate() {
            let out = &mut out[i * 24..][..25];
            if a8 == b8 {
                // both screens agree on these 8 pixels (most of a frame): the colours themselves
                for (x, &a) in a8.iter().enumerate() {
                    out[x * 3..][..4].copy_from_slice(&padded[a as usize]);
                }
            } else {
                for (x, (&a, &b)) in a8.iter().zip(b8).enumerate() {
                    out[x * 3..][..4].copy_from_slice(&max(a, b));
                }
            }
        }
        let done = first8.len() * 8;
        for (x, (&a, &b)) in first_rest.iter().zip(&second[done..last]).enumerate() {
            out[(done + x) * 3..][..4].copy_from_slice(&max(a, b));
        }
        out[last * 3..][..3].copy_from_slice(&max(first[last], second[last])[..3]);
        return;
    }
    for ((pixel, &a), &b) in out.chunks_exact_mut(C).zip(first).zip(second) {
        let (pa, pb) = (&palette[a as usize], &palette[b as usize]);
        for c in 0..C {
            pixel[c] = pa[c].max(pb[c]);
        }
    }
}

/// Converts one palette-index screen to colour.
pub fn palette_apply<const C: usize>(indices: &[u8], palette: &[[u8; C]; 256], out: &mut [u8]) {
    debug_assert_eq!(out.len(), indices.len() * C);
    for (pixel, &a) in out.chunks_exact_mut(C).zip(indices) {
        pixel.copy_from_slice(&palette[a as usize]);
    }
}

/// Source taps of one output index: `(first source index, weights)`.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Area-interpolation weights along one axis, as OpenCV's `INTER_AREA` computes them for a
/// shrink by `src / dst`: output cell `d` covers source span `[d * s, (d + 1) * s)`; each source
/// pixel weighs its overlap with that span divided by the span's width.
fn area_taps(src: usize, dst: usize) -> Vec<Taps> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f1 = d as f64 * scale;
            let f2 = f1 + scale;
            let cell = scale.min(src as f64 - f1);
            let mut s1 = f1.ceil() as usize;
            let s2 = (f2.floor() as usize).min(src - 1);
            s1 = s1.min(s2);
            let mut start = s1;
            let mut weights = Vec::new();
            if s1 as f64 - f1 > 1e-3 {
                start = s1 - 1;
                weights.push(((s1 as f64 - f1) / cell) as f32);
            }
            for _ in s1..s2 {
                weights.push((1.0 / cell) as f32);
            }
            if f2 - s2 as f64 > 1e-3 {
                weights.push(((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32);
            }
            Taps { start, weights }
        })
        .collect()
}

/// One axis's [`area_taps`] as flat tables: output `d` reads source indices `start[d]..` with the
/// weights `weights[d * width..][..count[d]]`. Every output owns `width` weight slots (the most
/// taps of any output); the slots past `count[d]` hold zeros, so a fixed-width loop over them
/// adds exact `+0.0` terms after the real ones and leaves each sum bit for bit unchanged.
#[derive(Debug, Clone)]
struct TapTable {
    start: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<f32>,
    width: usize,
}

impl TapTable {
    fn new(src: usize, dst: usize) -> Self {
        let taps = area_taps(src, dst);
        let width = taps.iter().map(|t| t.weights.len()).max().unwrap_or(1).max(1);
        let mut weights = vec![0.0; dst * width];
        for (slots, t) in weights.chunks_exact_mut(width).zip(&taps) {
            slots[..t.weights.len()].copy_from_slice(&t.weights);
        }
        Self {
            start: taps.iter().map(|t| t.start).collect(),
            count: taps.iter().map(|t| t.weights.len()).collect(),
            weights,
            width,
        }
    }

    /// The real (unpadded) weights of output `d`.
    fn weights_of(&self, d: usize) -> &[f32] {
        &self.weights[d * self.width..][..self.count[d]]
    }
}

/// Floats per pixel and row in the horizontal pass for `channels` channels: 3 is padded to 4, so
/// that a pixel is one 4-float vector.
fn lanes(channels: usize) -> usize {
    if channels == 3 { 4 } else { channels }
}

/// Floats per pixel position in the horizontal pass: `GROUP / L` source rows of `L` lanes each
/// are interleaved, so that one 8-float vector (AVX2) carries one tap of several rows at once.
const GROUP: usize = 8;

/// Rounds a sum of the area resize to a byte like OpenCV's `saturate_cast<uchar>` (`cvRound`):
/// to nearest, exact .5 ties to even, clamped to 0..=255. Adding 1.5 * 2^23 leaves the rounded
/// integer in the low mantissa bits (the FPU's default round-half-to-even does the rounding),
/// which vectorises where `round_ties_even` would be a libm call on baseline x86-64.
#[inline(always)]
fn round_to_u8(v: f32) -> u8 {
    const ROUND: f32 = 12_582_912.0;
    let v = if v > 0.0 { v } else { 0.0 };
    let v = if v < 255.0 { v } else { 255.0 };
    (v + ROUND).to_bits() as u8
}

/// `palette` as floats, `L` lanes per colour (lanes past `C` are zero).
fn float_palette<const C: usize, const L: usize>(palette: &[[u8; C]; 256]) -> [[f32; L]; 256] {
    let mut out = [[0.0; L]; 256];
    for (f, p) in out.iter_mut().zip(palette) {
        for (lane, &v) in f.iter_mut().zip(p) {
            *lane = v as f32;
        }
    }
    out
}

/// Where the horizontal pass reads its source rows from, as floats with `L` lanes per pixel
/// (lanes past the image's channels hold finite values that are summed along but never stored).
trait SourceRows<const L: usize> {
    /// Writes source row `y` into lanes `lane..lane + L` of `row` (exactly `src_w` pixels).
    fn fill(&self, y: usize, row: &mut [[f32; GROUP]], lane: usize);
}

/// A `C`-channel byte image, `row_bytes` bytes per row.
struct ByteRows<'a, const C: usize> {
    image: &'a [u8],
    row_bytes: usize,
}

impl<const C: usize, const L: usize> SourceRows<L> for ByteRows<'_, C> {
    #[inline(always)]
    fn fill(&self, y: usize, row: &mut [[f32; GROUP]], lane: usize) {
        let src = &self.image[y * self.row_bytes..][..self.row_bytes];
        let Some((last, row)) = row.split_last_mut() else { return };
        // `L` bytes from each pixel's first (one vector load and conversion; where `L > C` the
        // extra lanes see the next pixel's bytes, and nothing reads them)
        for (x, px) in row.iter_mut().enumerate() {
            let bytes = &src[x * C..][..L];
            let px = &mut px[lane..lane + L];
            for l in 0..L {
                px[l] = bytes[l] as f32;
            }
        }
        let bytes = &src[row.len() * C..][..C];
        for l in 0..L {
            last[lane + l] = if l < C { bytes[l] as f32 } else { 0.0 };
        }
    }
}

/// Two palette-index screens through a float palette with the channel-wise max: [`palette_max`]
/// as floats (the max of exactly converted bytes is the converted max).
struct PaletteMaxRows<'a, const L: usize> {
    first: &'a [u8],
    second: &'a [u8],
    width: usize,
    palette: [[f32; L]; 256],
}

impl<const L: usize> SourceRows<L> for PaletteMaxRows<'_, L> {
    #[inline(always)]
    fn fill(&self, y: usize, row: &mut [[f32; GROUP]], lane: usize) {
        #[inline(always)]
        fn pixel<const L: usize>(px: &mut [f32; GROUP], lane: usize, pa: &[f32; L], pb: &[f32; L]) {
            let px = &mut px[lane..lane + L];
            for l in 0..L {
                px[l] = if pa[l] > pb[l] { pa[l] } else { pb[l] };
            }
        }
        let (first, second) = (&self.first[y * self.width..][..self.width], &self.second[y * self.width..][..self.width]);
        let palette = &self.palette;
        // indices 8 at a time through one u64 load each (the loop is bound by loads, not arithmetic)
        let (row8, row_rest) = row.as_chunks_mut::<8>();
        let (first8, first_rest) = first.as_chunks::<8>();
        let (second8, second_rest) = second.as_chunks::<8>();
        for ((px8, a8), b8) in row8.iter_mut().zip(first8).zip(second8) {
            let (a, b) = (u64::from_le_bytes(*a8), u64::from_le_bytes(*b8));
            if a == b {
                // both screens agree on these 8 pixels (most of a frame): the max is the colour itself
                for (i, px) in px8.iter_mut().enumerate() {
                    px[lane..lane + L].copy_from_slice(&palette[(a >> (8 * i)) as u8 as usize]);
                }
            } else {
                for (i, px) in px8.iter_mut().enumerate() {
                    pixel(px, lane, &palette[(a >> (8 * i)) as u8 as usize], &palette[(b >> (8 * i)) as u8 as usize]);
                }
            }
        }
        for ((px, &a), &b) in row_rest.iter_mut().zip(first_rest).zip(second_rest) {
            pixel(px, lane, &palette[a as usize], &palette[b as usize]);
        }
    }
}

/// One palette-index screen through a float palette: [`palette_apply`] as floats.
struct PaletteRows<'a, const L: usize> {
    indices: &'a [u8],
    width: usize,
    palette: [[f32; L]; 256],
}

impl<const L: usize> SourceRows<L> for PaletteRows<'_, L> {
    #[inline(always)]
    fn fill(&self, y: usize, row: &mut [[f32; GROUP]], lane: usize) {
        for (px, &a) in row.iter_mut().zip(&self.indices[y * self.width..][..self.width]) {
            px[lane..lane + L].copy_from_slice(&self.palette[a as usize]);
        }
    }
}

/// Rows of the ring buffer the horizontal pass writes and the vertical pass reads, for groups of
/// `group` source rows: an output row needs at most `rows.width` consecutive source rows, and it
/// is computed as soon as the group holding its last one is done, so the rows still needed plus
/// the group being written always fit (and a group never wraps around the ring).
fn ring_rows(rows: &TapTable, group: usize) -> usize {
    (rows.width + group).next_multiple_of(group)
}

/// Both passes, `GROUP / L` source rows at a time. Horizontal: `source` writes the rows of a
/// group interleaved into `row[..src_w]` (rows past the image repeat its last row); output pixel
/// `dx` of each row is summed over its taps in tap order, starting from 0.0 (one vector for the
/// whole group), and its `C` channels are stored in source row `y`'s slot of the `scratch` ring
/// (`dst_w * C` floats a row). Vertical: every output row whose source rows are all done is
/// summed and rounded into `dst` right away, while they are still in cache. `T` is the column
/// tap-table width, or 0 for "read it at run time".
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn passes<const C: usize, const L: usize, const T: usize>(
    (src_h, src_w): (usize, usize),
    rows: &TapTable,
    cols: &TapTable,
    row: &mut [[f32; GROUP]],
    sums: &mut [[f32; GROUP]],
    scratch: &mut [f32],
    acc: &mut [f32],
    dst: &mut [u8],
    source: &impl SourceRows<L>,
) {
    let group = GROUP / L;
    let width = if T > 0 { T } else { cols.width };
    debug_assert_eq!(width, cols.width);
    let stride = sums.len() * C;
    let ring = ring_rows(rows, group);
    let mut dy = 0;
    for g in 0..src_h.div_ceil(group) {
        for r in 0..group {
            source.fill((g * group + r).min(src_h - 1), &mut row[..src_w], r * L);
        }
        for ((sum, &start), weights) in sums.iter_mut().zip(&cols.start).zip(cols.weights.chunks_exact(width)) {
            // a no-op (start < src_w and the row has `width` spare pixels) that lets the compiler drop the bounds check
            let start = start.min(row.len() - width);
            let pixels = &row[start..][..width];
            let mut acc = [0.0f32; GROUP];
            for k in 0..width {
                for l in 0..GROUP {
                    acc[l] += weights[k] * pixels[k][l];
                }
            }
            *sum = acc;
        }
        let slots = &mut scratch[(g * group) % ring * stride..][..group * stride];
        for (r, slot) in slots.chunks_exact_mut(stride).enumerate() {
            for (o, sum) in slot.as_chunks_mut::<C>().0.iter_mut().zip(sums.iter()) {
                o.copy_from_slice(&sum[r * L..][..C]);
            }
        }
        let done = ((g + 1) * group).min(src_h);
        while dy < rows.start.len() && rows.start[dy] + rows.count[dy] <= done {
            vertical_row(rows, dy, scratch, ring, acc, &mut dst[dy * stride..][..stride]);
            dy += 1;
        }
    }
    debug_assert_eq!(dy, rows.start.len());
}

/// Vertical pass of output row `dy`: the weighted sum of its source rows (slots `y % ring` of
/// `scratch`, `out.len()` floats each), taken over whole contiguous rows in tap order (so it
/// vectorises with the same per-element order), then rounded into `out`.
#[inline(always)]
fn vertical_row(rows: &TapTable, dy: usize, scratch: &[f32], ring: usize, acc: &mut [f32], out: &mut [u8]) {
    let width = out.len();
    let start = rows.start[dy];
    let source = |k: usize| &scratch[(start + k) % ring * width..][..width];
    match *rows.weights_of(dy) {
        [w0, w1, w2] => {
            let (r0, r1, r2) = (source(0), source(1), source(2));
            for (i, o) in out.iter_mut().enumerate() {
                let mut a = w0 * r0[i];
                a += w1 * r1[i];
                a += w2 * r2[i];
                *o = round_to_u8(a);
            }
        }
        ref weights => {
            let acc = &mut acc[..width];
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (k, &w) in weights.iter().enumerate() {
                for (a, &v) in acc.iter_mut().zip(source(k)) {
                    *a += w * v;
                }
            }
            for (o, &a) in out.iter_mut().zip(acc.iter()) {
                *o = round_to_u8(a);
            }
        }
    }
}

/// Area-interpolation resizer of `C`-channel u8 images (OpenCV's `INTER_AREA` for a shrink),
/// precomputed for one size pair; output equals `cv2.resize(..., interpolation=INTER_AREA)` byte
/// for byte (same f32 sums in the same order, rounded half to even). Enlarging is not supported
/// (the Atari screen only ever shrinks here).
///
/// Besides [`AreaResizer::resize`] of a byte image, [`AreaResizer::resize_palette_max`] and
/// [`AreaResizer::resize_palette`] read palette-index screens directly: the colour image is
/// never written, and the output is identical to [`palette_max`] / [`palette_apply`] followed by
/// [`AreaResizer::resize`].
#[derive(Debug, Clone)]
pub struct AreaResizer {
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
    channels: usize,
    rows: TapTable,
    cols: TapTable,
    /// One group of source rows as floats: `src_w + cols.width` pixel positions of `GROUP` floats
    /// (the positions past `src_w` are only ever read under zero weights and hold finite values).
    row: Vec<f32>,
    /// Horizontal sums of one group of rows, interleaved like `row`.
    sums: Vec<[f32; GROUP]>,
    /// Horizontal pass output: a ring of source rows (see [`ring_rows`]) of `dst_w x channels`
    /// floats each.
    scratch: Vec<f32>,
    /// One output row of sums (vertical pass).
    acc: Vec<f32>,
    /// Colour image, only for palette paths with more than 4 channels.
    pooled: Vec<u8>,
    /// The CPU has AVX2 (x86-64): run the passes compiled for it.
    avx2: bool,
}

impl AreaResizer {
    pub fn new(src_h: usize, src_w: usize, dst_h: usize, dst_w: usize, channels: usize) -> Self {
        assert!(dst_h <= src_h && dst_w <= src_w && dst_h > 0 && dst_w > 0, "area resize only shrinks");
        assert!(channels > 0, "an image has at least one channel");
        let (rows, cols) = (TapTable::new(src_h, dst_h), TapTable::new(src_w, dst_w));
        let ring = ring_rows(&rows, GROUP).max(ring_rows(&rows, 1));
        Self {
            src_h,
            src_w,
            dst_h,
            dst_w,
            channels,
            row: vec![0.0; (src_w + cols.width) * GROUP.max(channels)],
            sums: vec![[0.0; GROUP]; dst_w],
            scratch: vec![0.0; ring * dst_w * channels],
            acc: vec![0.0; dst_w * channels],
            pooled: Vec::new(),
            avx2: Self::cpu_has_avx2(),
            rows,
            cols,
        }
    }

    fn cpu_has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    pub fn is_identity(&self) -> bool {
        self.src_h == self.dst_h && self.src_w == self.dst_w
    }

    /// Resizes `src` (`src_h x src_w x C`, row-major HWC) into `dst` (`dst_h x dst_w x C`);
    /// values are rounded to nearest with ties to even, like OpenCV's saturate cast.
    pub fn resize(&mut self, src: &[u8], dst: &mut [u8]) {
        let (c, w) = (self.channels, self.src_w);
        assert_eq!(src.len(), self.src_h * w * c, "source is src_h x src_w x channels");
        assert_eq!(dst.len(), self.dst_h * self.dst_w * c, "destination is dst_h x dst_w x channels");
        if self.is_identity() {
            dst.copy_from_slice(src);
            return;
        }
        let row_bytes = w * c;
        match c {
            1 => self.run::<1, 1>(&ByteRows::<1> { image: src, row_bytes }, dst),
            2 => self.run::<2, 2>(&ByteRows::<2> { image: src, row_bytes }, dst),
            3 => self.run::<3, 4>(&ByteRows::<3> { image: src, row_bytes }, dst),
            4 => self.run::<4, 4>(&ByteRows::<4> { image: src, row_bytes }, dst),
            _ => self.run_any_channels(src, dst),
        }
    }

    /// [`palette_max`] of two palette-index screens (`src_h x src_w` bytes each) followed by
    /// [`AreaResizer::resize`], fused: same bytes in `dst`, without the colour image.
    pub fn resize_palette_max<const C: usize>(&mut self, first: &[u8], second: &[u8], palette: &[[u8; C]; 256], dst: &mut [u8]) {
        let width = self.src_w;
        assert_eq!(C, self.channels, "palette channels");
        assert_eq!(first.len(), self.src_h * width, "index screen is src_h x src_w");
        assert_eq!(second.len(), first.len(), "index screen is src_h x src_w");
        assert_eq!(dst.len(), self.dst_h * self.dst_w * C, "destination is dst_h x dst_w x channels");
        if self.is_identity() {
            palette_max(first, second, palette, dst);
            return;
        }
        match C {
            1 | 2 => self.run::<C, C>(&PaletteMaxRows { first, second, width, palette: float_palette::<C, C>(palette) }, dst),
            3 | 4 => self.run::<C, 4>(&PaletteMaxRows { first, second, width, palette: float_palette::<C, 4>(palette) }, dst),
            _ => {
                let mut pooled = std::mem::take(&mut self.pooled);
                pooled.resize(first.len() * C, 0);
                palette_max(first, second, palette, &mut pooled);
                self.resize(&pooled, dst);
                self.pooled = pooled;
            }
        }
    }

    /// [`palette_apply`] of one palette-index screen followed by [`AreaResizer::resize`], fused.
    pub fn resize_palette<const C: usize>(&mut self, indices: &[u8], palette: &[[u8; C]; 256], dst: &mut [u8]) {
        let width = self.src_w;
        assert_eq!(C, self.channels, "palette channels");
        assert_eq!(indices.len(), self.src_h * width, "index screen is src_h x src_w");
        assert_eq!(dst.len(), self.dst_h * self.dst_w * C, "destination is dst_h x dst_w x channels");
        if self.is_identity() {
            palette_apply(indices, palette, dst);
            return;
        }
        match C {
            1 | 2 => self.run::<C, C>(&PaletteRows { indices, width, palette: float_palette::<C, C>(palette) }, dst),
            3 | 4 => self.run::<C, 4>(&PaletteRows { indices, width, palette: float_palette::<C, 4>(palette) }, dst),
            _ => {
                let mut pooled = std::mem::take(&mut self.pooled);
                pooled.resize(indices.len() * C, 0);
                palette_apply(indices, palette, &mut pooled);
                self.resize(&pooled, dst);
                self.pooled = pooled;
            }
        }
    }

    /// Both passes with `L >= C` float lanes per pixel, reading the source rows from `source`;
    /// compiled for AVX2 as well, and run that way where the CPU has it (the same operations in
    /// the same order, so the same bytes: AVX2 only widens the vectors; no FMA).
    fn run<const C: usize, const L: usize>(&mut self, source: &impl SourceRows<L>, dst: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is only set where `is_x86_feature_detected!("avx2")` said yes.
            unsafe { self.run_avx2::<C, L>(source, dst) };
            return;
        }
        self.run_portable::<C, L>(source, dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_avx2<const C: usize, const L: usize>(&mut self, source: &impl SourceRows<L>, dst: &mut [u8]) {
        self.run_portable::<C, L>(source, dst);
    }

    #[inline(always)]
    fn run_portable<const C: usize, const L: usize>(&mut self, source: &impl SourceRows<L>, dst: &mut [u8]) {
        let Self { src_h, src_w, channels, rows, cols, row, sums, scratch, acc, .. } = self;
        let size = (*src_h, *src_w);
        debug_assert!(C == *channels && L >= C && L == lanes(C) && GROUP.is_multiple_of(L));
        let row = &mut row.as_chunks_mut::<GROUP>().0[..size.1 + cols.width];
        match cols.width {
            1 => passes::<C, L, 1>(size, rows, cols, row, sums, scratch, acc, dst, source),
            2 => passes::<C, L, 2>(size, rows, cols, row, sums, scratch, acc, dst, source),
            3 => passes::<C, L, 3>(size, rows, cols, row, sums, scratch, acc, dst, source),
            4 => passes::<C, L, 4>(size, rows, cols, row, sums, scratch, acc, dst, source),
            _ => passes::<C, L, 0>(size, rows, cols, row, sums, scratch, acc, dst, source),
        }
    }

    /// Both passes for more than 4 channels (one row at a time, one float per channel, no fixed
    /// widths): the same sums in the same order as [`passes`].
    fn run_any_channels(&mut self, src: &[u8], dst: &mut [u8]) {
        let Self { src_w, channels: c, rows, cols, row, scratch, acc, .. } = self;
        let (src_w, c) = (*src_w, *c);
        let stride = cols.start.len() * c;
        let ring = ring_rows(rows, 1);
        let mut dy = 0;
        for (y, src_row) in src.chunks_exact(src_w * c).enumerate() {
            for (f, &b) in row.iter_mut().zip(src_row) {
                *f = b as f32;
            }
            let out = &mut scratch[y % ring * stride..][..stride];
            for (dx, &start) in cols.start.iter().enumerate() {
                let weights = &cols.weights[dx * cols.width..][..cols.width];
                for ch in 0..c {
                    let mut sum = 0.0f32;
                    for (k, &w) in weights.iter().enumerate() {
                        sum += w * row[(start + k) * c + ch];
                    }
                    out[dx * c + ch] = sum;
                }
            }
            while dy < rows.start.len() && rows.start[dy] + rows.count[dy] <= y + 1 {
                vertical_row(rows, dy, scratch, ring, acc, &mut dst[dy * stride..][..stride]);
                dy += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// The straightforward two-pass area resize (a `Vec` of weights per tap, horizontal pass into
    /// a float image, vertical pass per element), with OpenCV's rounding: the reference the
    /// restructured passes must reproduce byte for byte.
    fn reference_resize(src: &[u8], (src_h, src_w): (usize, usize), (dst_h, dst_w): (usize, usize), c: usize) -> Vec<u8> {
        if (src_h, src_w) == (dst_h, dst_w) {
            return src.to_vec();
        }
        let (rows, cols) = (area_taps(src_h, dst_h), area_taps(src_w, dst_w));
        let mut scratch = vec![0.0f32; src_h * dst_w * c];
        for y in 0..src_h {
            let row = &src[y * src_w * c..(y + 1) * src_w * c];
            for (dx, taps) in cols.iter().enumerate() {
                for ch in 0..c {
                    let mut acc = 0.0f32;
                    for (k, &w) in taps.weights.iter().enumerate() {
                        acc += w * row[(taps.start + k) * c + ch] as f32;
                    }
                    scratch[(y * dst_w + dx) * c + ch] = acc;
                }
            }
        }
        let width = dst_w * c;
        let mut dst = vec![0u8; dst_h * width];
        for (dy, taps) in rows.iter().enumerate() {
            for i in 0..width {
                let mut acc = 0.0f32;
                for (k, &w) in taps.weights.iter().enumerate() {
                    acc += w * scratch[(taps.start + k) * width + i];
                }
                dst[dy * width + i] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
        dst
    }

    fn random_palette<const C: usize>(rng: &mut ChaCha8Rng) -> [[u8; C]; 256] {
        let mut palette = [[0u8; C]; 256];
        for colour in palette.iter_mut() {
            rng.fill(&mut colour[..]);
        }
        palette
    }

    /// Index screens like the Atari's: runs of a few colours, so that areas often sum to ties.
    fn random_screen(rng: &mut ChaCha8Rng, len: usize, colours: u8) -> Vec<u8> {
        let mut screen = Vec::with_capacity(len);
        while screen.len() < len {
            let (colour, run) = (rng.random_range(0..colours) * 2, rng.random_range(1..12));
            screen.extend(std::iter::repeat_n(colour, run));
        }
        screen.truncate(len);
        screen
    }

    const SIZES: [((usize, usize), (usize, usize)); 6] = [
        ((210, 160), (84, 84)),
        ((210, 160), (105, 80)),
        ((13, 17), (5, 4)),
        ((210, 160), (20, 30)),
        ((9, 7), (9, 7)),
        ((8, 8), (1, 1)),
    ];

    #[test]
    fn rounding_is_half_to_even_and_saturating() {
        for twice in 0..=520u32 {
            let v = twice as f32 / 2.0;
            assert_eq!(round_to_u8(v), v.round_ties_even().min(255.0) as u8, "{v}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100_000 {
            let v: f32 = rng.random_range(-2.0..258.0);
            assert_eq!(round_to_u8(v), v.round_ties_even().clamp(0.0, 255.0) as u8, "{v}");
        }
        assert_eq!([round_to_u8(0.5), round_to_u8(1.5), round_to_u8(2.5), round_to_u8(254.5)], [0, 2, 2, 254]);
        assert_eq!([round_to_u8(f32::NAN), round_to_u8(-0.0), round_to_u8(1e9)], [0, 0, 255]);
    }

    #[test]
    fn resize_rounds_ties_to_even_like_opencv() {
        let mut resizer = AreaResizer::new(1, 2, 1, 1, 1);
        for (pair, expected) in [([0u8, 1], 0u8), ([1, 2], 2), ([2, 3], 2), ([3, 4], 4), ([254, 255], 254)] {
            let mut dst = [0u8];
            resizer.resize(&pair, &mut dst);
            assert_eq!(dst[0], expected, "mean of {pair:?}");
        }
    }

    /// The resizer for these sizes as `AreaResizer::new` makes it, and where that one runs the
    /// AVX2 build, the same forced onto the portable build.
    fn resizers((src_h, src_w): (usize, usize), (dst_h, dst_w): (usize, usize), c: usize) -> Vec<AreaResizer> {
        let resizer = AreaResizer::new(src_h, src_w, dst_h, dst_w, c);
        let portable = AreaResizer { avx2: false, ..resizer.clone() };
        if resizer.avx2 { vec![resizer, portable] } else { vec![resizer] }
    }

    #[test]
    fn resize_equals_the_reference_passes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (src, dst) in SIZES {
            for c in 1..=5 {
                let mut out = vec![0u8; dst.0 * dst.1 * c];
                for mut resizer in resizers(src, dst, c) {
                    for round in 0..3 {
                        let image: Vec<u8> = if round == 0 {
                            (0..src.0 * src.1 * c).map(|_| rng.random()).collect()
                        } else {
                            random_screen(&mut rng, src.0 * src.1 * c, 4).iter().map(|&v| v * 37).collect()
                        };
                        resizer.resize(&image, &mut out);
                        let avx2 = resizer.avx2;
                        assert!(out == reference_resize(&image, src, dst, c), "{src:?} -> {dst:?} x {c}, avx2 {avx2}, round {round}");
                    }
                }
            }
        }
    }

    fn check_fused<const C: usize>(rng: &mut ChaCha8Rng) {
        let palette = random_palette::<C>(rng);
        for (src, dst) in SIZES {
            let (mut fused, mut pooled) = (vec![0u8; dst.0 * dst.1 * C], vec![0u8; src.0 * src.1 * C]);
            for mut resizer in resizers(src, dst, C) {
                let avx2 = resizer.avx2;
                for _ in 0..3 {
                    let first = random_screen(rng, src.0 * src.1, 128);
                    let mut second = random_screen(rng, src.0 * src.1, 128);
                    for (i, s) in second.iter_mut().enumerate() {
                        if (i / 40) % 2 == 0 {
                            *s = first[i]; // stretches where both screens agree
                        }
                    }
                    palette_max(&first, &second, &palette, &mut pooled);
                    resizer.resize_palette_max(&first, &second, &palette, &mut fused);
                    let expected = reference_resize(&pooled, src, dst, C);
                    assert!(fused == expected, "max: {src:?} -> {dst:?} x {C}, avx2 {avx2}");
                    palette_apply(&second, &palette, &mut pooled);
                    resizer.resize_palette(&second, &palette, &mut fused);
                    let expected = reference_resize(&pooled, src, dst, C);
                    assert!(fused == expected, "apply: {src:?} -> {dst:?} x {C}, avx2 {avx2}");
                }
            }
        }
    }

    #[test]
    fn fused_palette_paths_equal_palette_then_resize() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        check_fused::<3>(&mut rng);
        check_fused::<1>(&mut rng);
        check_fused::<2>(&mut rng);
        check_fused::<4>(&mut rng);
        check_fused::<5>(&mut rng);
    }

    #[test]
    fn taps_of_an_integer_shrink_are_plain_means() {
        let taps = area_taps(4, 2);
        assert_eq!(taps, vec![Taps { start: 0, weights: vec![0.5, 0.5] }, Taps { start: 2, weights: vec![0.5, 0.5] }]);
    }

    #[test]
    fn taps_of_a_fractional_shrink_match_hand_computed_overlaps() {
        // 5 -> 2: scale 2.5. Cell 0 covers [0, 2.5): pixels 0, 1 fully, pixel 2 by half -> 1/2.5 each, 0.5/2.5.
        // Cell 1 covers [2.5, 5): pixel 2 by half, pixels 3, 4 fully.
        let taps = area_taps(5, 2);
        assert_eq!(taps[0].start, 0);
        assert_eq!(taps[0].weights, vec![0.4, 0.4, 0.2]);
        assert_eq!(taps[1].start, 2);
        assert_eq!(taps[1].weights, vec![0.2, 0.4, 0.4]);
        for t in area_taps(210, 84).iter().chain(area_taps(160, 84).iter()) {
            let sum: f32 = t.weights.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "weights sum to {sum}");
        }
    }

    #[test]
    fn resize_averages_areas() {
        // 2x4 single-channel image shrunk to 1x2: means of 2x2 blocks.
        let src = [0u8, 10, 100, 200, 20, 30, 50, 50];
        let mut dst = [0u8; 2];
        AreaResizer::new(2, 4, 1, 2, 1).resize(&src, &mut dst);
        assert_eq!(dst, [15, 100]);
        // a constant image stays constant through a fractional shrink
        let src = vec![77u8; 210 * 160 * 3];
        let mut dst = vec![0u8; 84 * 84 * 3];
        AreaResizer::new(210, 160, 84, 84, 3).resize(&src, &mut dst);
        assert!(dst.iter().all(|&v| v == 77));
    }

    fn naive_palette_max<const C: usize>(first: &[u8], second: &[u8], palette: &[[u8; C]; 256]) -> Vec<u8> {
        first.iter().zip(second).flat_map(|(&a, &b)| std::array::from_fn::<u8, C, _>(|c| palette[a as usize][c].max(palette[b as usize][c]))).collect()
    }

    fn check_palette_max<const C: usize>(rng: &mut ChaCha8Rng) {
        let palette = random_palette::<C>(rng);
        for len in [0, 1, 2, 7, 8, 9, 16, 17, 23, 24, 25, 160, 210 * 160] {
            for colours in [2, 128] {
                let first = random_screen(rng, len, colours);
                let mut second = random_screen(rng, len, colours);
                // long stretches where both screens agree, as between consecutive Atari frames
                for (i, s) in second.iter_mut().enumerate() {
                    if (i / 40) % 2 == 0 {
                        *s = first[i];
                    }
                }
                let mut out = vec![0u8; len * C];
                palette_max(&first, &second, &palette, &mut out);
                assert!(out == naive_palette_max(&first, &second, &palette), "{len} pixels x {C}");
            }
        }
    }

    #[test]
    fn palette_max_equals_the_per_pixel_max() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        check_palette_max::<3>(&mut rng);
        check_palette_max::<1>(&mut rng);
        check_palette_max::<4>(&mut rng);
    }

    #[test]
    fn palette_max_takes_the_channel_wise_max() {
        let mut palette = [[0u8; 3]; 256];
        palette[1] = [200, 0, 10];
        palette[2] = [100, 50, 20];
        let mut out = [0u8; 6];
        palette_max(&[1, 0], &[2, 2], &palette, &mut out);
        assert_eq!(out, [200, 50, 20, 100, 50, 20]);
    }
}
