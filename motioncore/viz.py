"""Pictures: motion fields on a flow colour wheel, sequences with labels, prediction panels."""

from __future__ import annotations

import numpy as np
import torch

from motioncore.motion import TARGET, displacements, num_classes, sources

# A ``batch`` here is anything with the tensors of ``motioncore.data.Batch`` (frames, labels,
# velocity), and ``prediction`` one of ``motioncore.model.Prediction``: pictures know no producer.


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def flow_rgb(classes: torch.Tensor | np.ndarray, r: int) -> np.ndarray:
    """Class map ``(H, W)`` -> RGB ``(H, W, 3)``: hue = direction, saturation = speed / (r*sqrt 2)."""
    from matplotlib.colors import hsv_to_rgb

    d = displacements(r)[torch.as_tensor(classes).cpu()].numpy().astype(float)  # (H, W, 2)
    angle = (np.arctan2(d[..., 1], d[..., 0]) / (2 * np.pi)) % 1.0
    speed = np.hypot(d[..., 0], d[..., 1]) / (r * np.sqrt(2))
    return hsv_to_rgb(np.stack([angle, np.clip(speed, 0, 1), np.ones_like(angle)], axis=-1))


def wheel_rgb(r: int) -> np.ndarray:
    """The legend: every class drawn at its own displacement, ``(2r+1, 2r+1, 3)``."""
    k = torch.arange(num_classes(r)).view(2 * r + 1, 2 * r + 1)
    return flow_rgb(k, r)


def sequences_png(batch, r: int, path, rows: int = 4) -> None:
    """A few sequences: every frame, then the true motion of each source frame."""
    plt = _plt()
    n, t = batch.frames.shape[:2]
    rows = min(rows, n)
    d = batch.labels.shape[1]
    cols = t + d + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for i in range(rows):
        for j in range(t):
            axes[i, j].imshow(batch.frames[i, j].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_title(f"frame {j}" + (" (target)" if j == TARGET else ""), fontsize=7)
        for j in range(d):
            axes[i, t + j].imshow(flow_rgb(batch.labels[i, j], r))
            axes[i, t + j].set_title(f"motion f{sources(t)[j]}->f{TARGET}", fontsize=7)
        v = batch.velocity[i, 0].tolist()
        axes[i, -1].imshow(wheel_rgb(r), extent=(-r - .5, r + .5, r + .5, -r - .5))
        axes[i, -1].set_title(f"legend; v={tuple(v)}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rgb(img, cmap: str | None, vmax: float | None) -> np.ndarray:
    """One panel cell as RGB ``(H, W, 3)`` floats: colour maps applied, RGB passed through."""
    img = img.detach().cpu().numpy() if torch.is_tensor(img) else np.asarray(img)
    if cmap is None:
        return img[..., :3]
    from matplotlib import colormaps

    return colormaps[cmap](np.clip(img / vmax, 0, 1))[..., :3]


def mosaic(cells: list[list[np.ndarray]], scale: int = 4, gap: int = 3) -> np.ndarray:
    """Rows of equally sized RGB cells -> one image, each pixel ``scale`` x ``scale``, white gaps."""
    h, w = cells[0][0].shape[:2]
    rows, cols = len(cells), len(cells[0])
    out = np.ones((rows * (h * scale + gap) - gap, cols * (w * scale + gap) - gap, 3))
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            y, x = i * (h * scale + gap), j * (w * scale + gap)
            out[y:y + h * scale, x:x + w * scale] = cell.repeat(scale, 0).repeat(scale, 1)
    return out


@torch.no_grad()
def panel_png(p, config, batch, path) -> None:
    """Per test sequence: inputs, true and predicted motion, attention, reconstruction, error.

    ``p``: the model's ``Prediction`` for ``batch.frames``. The cells are composed into one image
    under one set of axes: a tenth of the time of a grid of subplots, which matters because every
    sweep trial draws one.
    """
    plt = _plt()
    pred, fused = p.classes, p.recon
    r, t, d = config.motion_range, config.frames, config.directions
    target = batch.frames[:, TARGET]
    titles = [f"frame {i}" for i in range(t)]
    titles += [f"true f{sources(t)[j]}" for j in range(d)] + [f"pred f{sources(t)[j]}" for j in range(d)]
    titles += ["attention A"] if t == 5 else []
    titles += ["reconstruction", "|error|"]
    rows = []
    for i in range(batch.frames.shape[0]):
        cells = [_rgb(batch.frames[i, j], "gray", 1) for j in range(t)]
        cells += [flow_rgb(batch.labels[i, j], r) for j in range(d)]
        cells += [flow_rgb(pred[i, j], r) for j in range(d)]
        if t == 5:
            cells.append(_rgb(p.attention[i], "coolwarm", 1))
        cells += [_rgb(fused[i], "gray", 1), _rgb((fused[i] - target[i]).abs(), "magma", 0.5)]
        rows.append(cells)
    scale, gap = 4, 3
    image = mosaic(rows, scale, gap)
    step = batch.frames.shape[-1] * scale + gap
    legend_w = 1.3  # inches: the colour key of the motion columns
    fig = plt.figure(figsize=(image.shape[1] / 100 + 0.4 + legend_w, image.shape[0] / 100 + 0.8))
    ax, key = fig.subplots(1, 2, width_ratios=[image.shape[1] / 100 + 0.4, legend_w])
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([j * step + (step - gap) / 2 for j in range(len(titles))], titles, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    acc = (pred == batch.labels).float().mean().item()
    ax.set_title(f"{config.supervision} T={t} r={r} attention={config.attention}: acc {acc:.3f} "
                 "on these sequences (A>0.5 favours forward)", fontsize=8, pad=16)
    key.imshow(wheel_rgb(r), extent=(-r - .5, r + .5, r + .5, -r - .5), interpolation="nearest")
    key.set_title("motion (dx, dy)\nwhite: none", fontsize=7)
    key.set_xticks([-r, 0, r])
    key.set_yticks([-r, 0, r])
    key.tick_params(labelsize=6, length=2)
    key.set_box_aspect(1)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=0.9, wspace=0.08)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_recall_png(recall: torch.Tensor, config, path, summary: str = "") -> None:
    """Test recall of every motion class on its (dx, dy) grid, in %: a lost velocity is a red cell.

    ``recall (K,)`` from ``metrics.class_recall`` (NaN, drawn grey, where no digit pixel has that
    motion); the zero class is outlined.
    """
    plt = _plt()
    r = config.motion_range
    side = 2 * r + 1
    grid = recall.detach().cpu().double().view(side, side).numpy()
    fig, ax = plt.subplots(figsize=(max(4.6, 1.2 + 0.42 * side), max(4.2, 1.4 + 0.4 * side)))
    ax.set_facecolor("0.8")
    ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0, vmax=1,
              extent=(-r - .5, r + .5, r + .5, -r - .5), interpolation="nearest")
    if side <= 11:
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j - r, i - r, f"{100 * value:.0f}", ha="center", va="center",
                        fontsize=7 if side <= 7 else 5)
    ax.add_patch(plt.Rectangle((-.5, -.5), 1, 1, fill=False, lw=1.5))
    ax.set_xticks(range(-r, r + 1))
    ax.set_yticks(range(-r, r + 1))
    ax.tick_params(labelsize=6, length=2)
    ax.set_xlabel("dx (right)", fontsize=7)
    ax.set_ylabel("dy (down)", fontsize=7)
    fig.suptitle(f"{config.supervision} T={config.frames} r={r}: digit pixels right, % per motion"
                 + (f"\n{summary}" if summary else ""), fontsize=7)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.13, top=0.86)
    fig.savefig(path, dpi=110)
    plt.close(fig)
