"""The moving-digit generator against docs/conventions.md: motion, labels, background, seeds, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motioncore import mnist
from motioncore.data import MovingDigits, make_batch
from motioncore.data import main as data_main
from motioncore.motion import class_index, displacements, sources

N = 48


@pytest.fixture(scope="module")
def images(mnist_dir) -> dict[str, torch.Tensor]:
    """The uint8 digit images of every split, as the generator takes them."""
    return {s: torch.from_numpy(mnist.load_split(s, mnist_dir).copy()) for s in mnist.SPLITS}


def batch(images, *, split="train", n=N, start=0, **params):
    params = {"motion_range": 2, "frames": 3, "noise": 0.0, "seed": 0, **params}
    return make_batch(images[split], torch.arange(start, start + n), split=split, **params)


def shifted(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``img`` moved by (dx, dy) (+x right, +y down); vacated pixels are 0, nothing wraps."""
    h, w = img.shape[-2:]
    out = np.zeros_like(img)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


# --- the class convention ------------------------------------------------------------------

@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_class_index_formula_and_displacements_are_inverse(r):
    k = (2 * r + 1) ** 2
    table = displacements(r)
    assert table.shape == (k, 2) and table.dtype == torch.int64
    assert torch.equal(class_index(table[:, 0], table[:, 1], r), torch.arange(k))
    for dx in range(-r, r + 1):
        for dy in range(-r, r + 1):
            c = class_index(dx, dy, r)
            assert c == (dy + r) * (2 * r + 1) + (dx + r)
            assert table[c].tolist() == [dx, dy]
    assert table[r * (2 * r + 1) + r].tolist() == [0, 0]  # the zero-motion class k0


def test_class_index_known_values_for_r1():
    assert [class_index(dx, dy, 1) for dx, dy in [(-1, -1), (0, -1), (1, -1), (-1, 0), (0, 0), (1, 1)]] \
        == [0, 1, 2, 3, 4, 8]  # dx varies fastest; +y (down) is the slow axis


# --- shapes, dtypes, ranges ----------------------------------------------------------------

@pytest.mark.parametrize("frames,d", [(3, 1), (5, 2)])
def test_shapes_and_dtypes(images, frames, d):
    b = batch(images, frames=frames, noise=0.3, n=7)
    assert b.frames.shape == (7, frames, 28, 28) and b.frames.dtype == torch.float32
    assert b.labels.shape == (7, d, 28, 28) and b.labels.dtype == torch.int64
    assert b.masks.shape == (7, frames, 28, 28) and b.masks.dtype == torch.bool
    assert b.velocity.shape == (7, 1, 2) and b.velocity.dtype == torch.int64
    assert b.fg.shape == (7, d, 28, 28)
    assert torch.equal(b.fg, b.masks[:, list(sources(frames))])
    assert b.frames.min() >= 0 and b.frames.max() <= 1
    assert b.labels.min() >= 0 and b.labels.max() < 25
    assert sources(frames) == ((1,) if frames == 3 else (1, 3))


def test_larger_canvas_keeps_the_digit_centred(images):
    b = batch(images, image_size=40, n=4)
    small = batch(images, n=4)
    assert b.frames.shape == (4, 3, 40, 40)
    assert torch.equal(b.frames[:, 2, 6:34, 6:34], small.frames[:, 2])  # target: digit unshifted
    assert b.frames[:, 2, :6].abs().sum() == 0 and b.frames[:, 2, 34:].abs().sum() == 0


@pytest.mark.parametrize("r", [1, 3])
def test_velocity_components_cover_minus_r_to_r(images, r):
    v = batch(images, motion_range=r, n=400).velocity
    assert v.min() >= -r and v.max() <= r
    assert set(v[:, 0, 0].tolist()) == set(range(-r, r + 1)) == set(v[:, 0, 1].tolist())


# --- motion and labels ---------------------------------------------------------------------

@pytest.mark.parametrize("r,frames", [(1, 3), (2, 3), (2, 5), (3, 5)])
def test_digit_pixels_land_on_the_same_intensity_in_the_target(images, r, frames):
    """Noise 0: every digit pixel of a source frame, moved by its label, shows the same value."""
    b = batch(images, motion_range=r, frames=frames, n=N)
    table = displacements(r)
    f, labels, fg = b.frames.numpy(), b.labels.numpy(), b.fg.numpy()
    checked = 0
    for d, s in enumerate(sources(frames)):
        for i in range(N):
            v = b.velocity[i, 0].numpy()
            want = class_index(*((2 - s) * v).tolist(), r)  # +v forward, -v backward
            assert (labels[i, d][fg[i, d]] == want).all()
            assert (labels[i, d][~fg[i, d]] == class_index(0, 0, r)).all()
            ys, xs = np.nonzero(fg[i, d])
            dx, dy = table[labels[i, d, ys, xs]].numpy().T
            ty, tx = ys + dy, xs + dx
            inside = (ty >= 0) & (ty < 28) & (tx >= 0) & (tx < 28)
            np.testing.assert_array_equal(f[i, 2, ty[inside], tx[inside]], f[i, s, ys[inside], xs[inside]])
            assert (f[i, s, ys, xs] > 0).all()  # a digit pixel shows the digit
            checked += inside.sum()
    assert checked > N * 50 * len(sources(frames))  # digits have ~100-150 pixels


@pytest.mark.parametrize("r", [1, 3])
def test_every_frame_is_the_target_digit_shifted_with_nothing_wrapping(images, r):
    """Noise 0: frame t is the target frame moved by (t - 2) v, vacated pixels 0 (no wrap)."""
    b = batch(images, motion_range=r, frames=5, n=N)
    f = b.frames.numpy()
    for i in range(N):
        vx, vy = b.velocity[i, 0].tolist()
        for t in range(5):
            np.testing.assert_array_equal(f[i, t], shifted(f[i, 2], (t - 2) * vx, (t - 2) * vy))
    if r == 3:  # some digits are cut at the canvas edge in the outer frames
        assert (b.frames[:, 0].flatten(1).sum(1) < b.frames[:, 2].flatten(1).sum(1) - 0.5).any()


@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("frames", [3, 5])
def test_background_is_static_and_has_the_zero_class(images, noise, frames):
    r = 2
    b = batch(images, motion_range=r, frames=frames, noise=noise)
    bg = ~b.masks.any(1)  # (N, H, W): no digit in any frame
    f = b.frames
    for t in range(1, frames):
        assert torch.equal(f[:, t][bg], f[:, 0][bg])
    for d in range(len(sources(frames))):
        assert (b.labels[:, d][~b.fg[:, d]] == class_index(0, 0, r)).all()
    if noise == 0:
        assert (f[:, 0][bg] == 0).all()
        assert torch.equal(b.masks, f > 0)
    else:
        values = f[:, 0][bg]
        assert values.max() < noise and values.min() >= 0
        assert 0.2 < values.mean() < 0.3  # Uniform(0, 0.5)
        assert values.unique().numel() > values.numel() // 2  # a field, not a constant


def test_digit_is_composited_over_the_background_with_its_intensity_as_alpha(images):
    """I = a + (1 - a) B, where the background B shows at the same pixel in another frame.

    The digit and velocity draws come from their own random streams, so the noise-free sequence
    of the same index holds the same digit: its frames give a.
    """
    plain, noisy = batch(images, frames=5), batch(images, frames=5, noise=0.7)
    assert torch.equal(plain.velocity, noisy.velocity)
    a = plain.frames
    seen_bg = ~plain.masks  # (N, T, H, W)
    has_bg = seen_bg.any(1)  # pixels where B can be read off some frame
    idx = seen_bg.float().argmax(1, keepdim=True)  # first frame showing the background
    background = torch.gather(noisy.frames, 1, idx).squeeze(1)  # (N, H, W)
    expect = a + (1 - a) * background[:, None]
    both = has_bg[:, None] & plain.masks
    assert both.sum() > 1000
    torch.testing.assert_close(noisy.frames[both], expect[both], rtol=0, atol=1e-6)


def test_two_digits_each_label_pixel_belongs_to_one_of_them(images):
    r = 2
    b = batch(images, motion_range=r, frames=5, digits=2, n=32)
    assert b.velocity.shape == (32, 2, 2)
    for d, s in enumerate(sources(5)):
        allowed = class_index(*((2 - s) * b.velocity).unbind(-1), r)  # (N, 2)
        got = b.labels[:, d]
        ok = (got[..., None] == allowed[:, None, None, :]).any(-1)  # (N, H, W)
        assert ok[b.fg[:, d]].all()


# --- determinism ---------------------------------------------------------------------------

def test_a_sequence_depends_only_on_seed_split_and_index(mnist_dir):
    gen = MovingDigits("train", motion_range=2, frames=5, noise=0.5, seed=3, data_dir=mnist_dir)
    whole = gen[0:24]
    alone = [gen[[i]] for i in (0, 7, 23)]
    reversed_batch = gen[list(range(23, -1, -1))]
    mixed = gen[torch.tensor([900, 7, 5])]
    again = MovingDigits("train", motion_range=2, frames=5, noise=0.5, seed=3, data_dir=mnist_dir)[0:24]
    for field in ("frames", "labels", "masks", "velocity"):
        w = getattr(whole, field)
        for j, i in enumerate((0, 7, 23)):
            assert torch.equal(getattr(alone[j], field)[0], w[i])
        assert torch.equal(getattr(reversed_batch, field).flip(0), w)
        assert torch.equal(getattr(mixed, field)[1], w[7])
        assert torch.equal(getattr(again, field), w)
    assert [len(b.frames) for b in gen.batches(10, 24)] == [10, 10, 4]
    assert torch.equal(torch.cat([b.frames for b in gen.batches(10, 24)]), whole.frames)


def test_big_batches_made_in_chunks_match_small_ones(mnist_dir):
    """The torch path makes huge CPU batches in chunks; the values do not depend on it."""
    gen = MovingDigits("val", motion_range=1, frames=3, seed=0, data_dir=mnist_dir)
    big = gen[0:gen.CHUNK + 40]
    tail = gen[gen.CHUNK - 5:gen.CHUNK + 40]
    assert torch.equal(big.frames[gen.CHUNK - 5:], tail.frames)
    assert torch.equal(big.labels[gen.CHUNK - 5:], tail.labels)


# --- batch composition ----------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    dict(motion_range=5, frames=5, noise=0.5),
    dict(motion_range=1, frames=3),
    dict(motion_range=2, frames=5, digits=2, noise=0.9),  # a digit composited over another
    dict(motion_range=2, frames=3, noise=0.3, digits=3, image_size=40),
    dict(motion_range=7, frames=3, digits=4, image_size=12, noise=1.0),
    dict(motion_range=3, frames=5, image_size=16),  # canvas smaller than a digit: a crop
    dict(motion_range=20, frames=5),  # shifts beyond the canvas: windows clamped off the digit
])
def test_a_sequence_does_not_depend_on_the_batch_it_is_made_in(mnist_dir, params):
    """Each batch pads its digits by what its own windows need; the values must not show it."""
    gen = MovingDigits("train", seed=2, data_dir=mnist_dir, **params)
    idx = torch.arange(100, 300)
    want = gen[idx]
    parts = [gen[idx[i:i + n]] for i, n in ((0, 1), (1, 7), (8, 64), (72, 128))]
    for field in ("frames", "labels", "masks", "velocity"):
        got = torch.cat([getattr(p, field) for p in parts])
        assert torch.equal(got, getattr(want, field)), field


# --- CLI -----------------------------------------------------------------------------------

def test_cli_writes_arrays_and_png(tmp_path, run_cli, images):
    out, png = tmp_path / "x.npz", tmp_path / "y.png"
    proc = run_cli("motioncore.data", "--split", "test", "--n", "50", "--motion-range", "3",
                   "--frames", "5", "--noise", "0.5", "--seed", "0", "--out", out, "--png", png)
    assert proc.returncode == 0, proc.stderr
    arrays = np.load(out)
    assert sorted(arrays.files) == ["frames", "labels", "masks", "velocity"]
    assert arrays["frames"].shape == (50, 5, 28, 28) and arrays["frames"].dtype == np.float32
    assert arrays["labels"].shape == (50, 2, 28, 28) and arrays["labels"].dtype == np.int64
    assert arrays["velocity"].shape == (50, 1, 2) and arrays["velocity"].dtype == np.int64
    assert arrays["masks"].shape == (50, 5, 28, 28) and arrays["masks"].dtype == np.bool_
    same = batch(images, split="test", n=50, motion_range=3, frames=5, noise=0.5, seed=0)
    np.testing.assert_array_equal(arrays["frames"], same.frames.numpy())
    np.testing.assert_array_equal(arrays["labels"], same.labels.numpy())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "(50, 5, 28, 28)" in proc.stdout


BAD_PARAMS = [
    (["--motion-range", "0"], "motion range 0"),
    (["--frames", "4"], "frames 4"),
    (["--noise", "1.5"], "noise 1.5"),
    (["--split", "bogus"], "split 'bogus'"),
    (["--n", "0"], "--n 0"),
]


@pytest.mark.parametrize("args,named", BAD_PARAMS, ids=[a[0] for a, _ in BAD_PARAMS])
def test_cli_main_rejects_bad_params_with_one_line(tmp_path, capsys, one_line_error, args, named):
    """In-process, so all five stay fast; the subprocess test below checks the real exit path."""
    assert data_main([*args, "--out", str(tmp_path / "no.npz")]) == 2
    captured = capsys.readouterr()
    assert named in one_line_error(captured.err)
    assert captured.out == ""
    assert not (tmp_path / "no.npz").exists()


def test_cli_process_exits_2_with_one_line_on_a_bad_param(tmp_path, run_cli, one_line_error):
    proc = run_cli("motioncore.data", "--frames", "4", "--noise", "1.5", "--out", tmp_path / "no.npz")
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "frames 4" in line and "3 and 5" in line  # the first bad value and what is allowed
    assert not (tmp_path / "no.npz").exists()
