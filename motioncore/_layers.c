/* The CPU generator's per-pixel work for one digit layer, in one pass per sequence.
 *
 * Built on first use by motioncore/native.py and called by motioncore/data.py's make_batch,
 * whose PyTorch path computes the same values (tests/test_data.py compares them bit for bit).
 * Every float operation is rounded on its own (-ffp-contract=off) as the PyTorch path's
 * separate tensor ops are, so no fused multiply-add changes a value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef MOTIONCORE_CLONES /* one AVX2 build and one portable build, picked at load time */
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

enum { EMPTY = 0, NOISE = 1, OVER = 2 };

/* Digits and noise rows are picked at random from megabytes of tables, so each sequence's
 * reads miss the caches: ask for the next sequence's bytes while this one is computed. */
static inline void prefetch(const uint8_t *plane, int64_t plane_px, const int64_t *rows,
                            const float *table_a, const float *table_b, int64_t px) {
    for (int64_t p = 0; p < plane_px; p += 64) __builtin_prefetch(plane + p);
    if (rows)
        for (int64_t p = 0; p < px; p += 16) {
            __builtin_prefetch(table_a + rows[0] * px + p);
            __builtin_prefetch(table_b + rows[1] * px + p);
        }
}

/* n <= 32 bytes as two overlapping fixed-size moves (a call to memcpy costs more than a row). */
static inline void copy_row(uint8_t *restrict d, const uint8_t *restrict from, int64_t n) {
    if (n > 32) memcpy(d, from, (size_t)n);
    else if (n >= 16) memcpy(d, from, 16), memcpy(d + n - 16, from + n - 16, 16);
    else if (n >= 8) memcpy(d, from, 8), memcpy(d + n - 8, from + n - 8, 8);
    else if (n >= 4) memcpy(d, from, 4), memcpy(d + n - 4, from + n - 4, 4);
    else for (int64_t x = 0; x < n; x++) d[x] = from[x];
}

/* The s x s window of a ph x pw plane whose top-left pixel is at (wy, wx), zero off the plane,
 * into out (s * s bytes). */
static inline void window(uint8_t *restrict out, const uint8_t *restrict plane, int64_t ph,
                          int64_t pw, int64_t wy, int64_t wx, int64_t s) {
    const int64_t x0 = wx < 0 ? -wx : 0, x1 = pw - wx < s ? pw - wx : s;  /* on the plane */
    const int64_t y0 = wy < 0 ? -wy : 0, y1 = ph - wy < s ? ph - wy : s;
    memset(out, 0, (size_t)(s * s));
    for (int64_t y = y0; y < y1 && x0 < x1; y++)
        copy_row(out + y * s + x0, plane + (wy + y) * pw + wx + x0, x1 - x0);
}

/* Layer of n sequences of tn frames of s x s pixels, each frame a window of a digit plane.
 *
 * img          uint8 digit planes of ph x pw pixels; sequence i shows plane which[i], and its
 *              frame t the window with top-left pixel (wy, wx)[i * tn + t] (zero off the plane).
 * mode EMPTY   frames = a * scale (the first digit on an empty canvas).
 * mode NOISE   b = frac(table_a[rows[2i]] + table_b[rows[2i + 1]]) * noise, a static
 *              background per sequence; frames = b + a * ((1 - b) * scale).
 * mode OVER    frames = f + a * ((1 - f) * scale) over the frames f already there.
 * masks        a != 0 (EMPTY, NOISE) or masks | a != 0 (OVER), one byte per pixel.
 * labels       (n, dn, s, s): cls[i * dn + d] where frame src[d] shows the digit, else k0
 *              (EMPTY, NOISE) or the label already there (OVER).
 * Returns 0; -1 when a work buffer cannot be allocated; -2 when an index is out of range.
 */
CLONES int motioncore_layer(const uint8_t *restrict img, int64_t planes, int64_t ph, int64_t pw,
                            const int64_t *restrict which, const int64_t *restrict wy,
                            const int64_t *restrict wx, int64_t n, int64_t tn, int64_t s, int mode,
                            const float *restrict table_a, const float *restrict table_b,
                            int64_t table_rows, const int64_t *restrict rows, float noise, float scale,
                            float *restrict frames, uint8_t *restrict masks,
                            int64_t *restrict labels, const int64_t *restrict cls, int64_t dn,
                            const int64_t *restrict src, int64_t k0) {
    const int64_t px = s * s;
    for (int64_t i = 0; i < n; i++)  /* every index in range before any memory is touched */
        if (which[i] < 0 || which[i] >= planes ||
            (mode == NOISE && (rows[2 * i] < 0 || rows[2 * i] >= table_rows ||
                               rows[2 * i + 1] < 0 || rows[2 * i + 1] >= table_rows)))
            return -2;
    for (int64_t d = 0; d < dn; d++)
        if (src[d] < 0 || src[d] >= tn) return -2;
    uint8_t *restrict alpha = malloc((size_t)(tn * px));  /* this sequence's windows, contiguous */
    float *restrict below = malloc((size_t)px * sizeof(float));
    float *restrict weight = malloc((size_t)px * sizeof(float));
    if (!alpha || !below || !weight) {
        free(alpha), free(below), free(weight);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        if (i + 1 < n)
            prefetch(img + which[i + 1] * ph * pw, ph * pw, mode == NOISE ? rows + 2 * (i + 1) : 0,
                     table_a, table_b, px);
        if (mode == NOISE) {
            const float *restrict ra = table_a + rows[2 * i] * px;
            const float *restrict rb = table_b + rows[2 * i + 1] * px;
            for (int64_t p = 0; p < px; p++) {
                float v = ra[p] + rb[p];  /* in [0, 2): frac is one conditional subtraction */
                v -= (float)(v >= 1.0f);
                below[p] = v * noise;
                weight[p] = (1.0f - below[p]) * scale;
            }
        }
        for (int64_t t = 0; t < tn; t++) {
            uint8_t *restrict a = alpha + t * px;
            window(a, img + which[i] * ph * pw, ph, pw, wy[i * tn + t], wx[i * tn + t], s);
            float *restrict f = frames + (i * tn + t) * px;
            uint8_t *restrict m = masks + (i * tn + t) * px;
            if (mode == EMPTY) {
                for (int64_t p = 0; p < px; p++) f[p] = (float)a[p] * scale;
            } else if (mode == NOISE) {
                for (int64_t p = 0; p < px; p++) f[p] = (float)a[p] * weight[p] + below[p];
            } else {
                for (int64_t p = 0; p < px; p++) f[p] = (float)a[p] * ((1.0f - f[p]) * scale) + f[p];
            }
            if (mode == OVER) {
                for (int64_t p = 0; p < px; p++) m[p] |= a[p] != 0;
            } else {
                for (int64_t p = 0; p < px; p++) m[p] = a[p] != 0;
            }
        }
        for (int64_t d = 0; d < dn; d++) {
            const uint8_t *restrict a = alpha + src[d] * px;
            int64_t *restrict l = labels + (i * dn + d) * px;
            const int64_t k = cls[i * dn + d];
            if (mode == OVER) {
                for (int64_t p = 0; p < px; p++) l[p] = a[p] ? k : l[p];
            } else {
                for (int64_t p = 0; p < px; p++) l[p] = a[p] ? k : k0;
            }
        }
    }
    free(alpha), free(below), free(weight);
    return 0;
}
