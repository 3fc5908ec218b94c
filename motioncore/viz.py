"""Pictures: motion fields on a flow colour wheel, sequences with labels, prediction panels."""

from __future__ import annotations

import numpy as np
import torch

from motioncore.data import Batch, displacements, sources


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
    k = torch.arange((2 * r + 1) ** 2).view(2 * r + 1, 2 * r + 1)
    return flow_rgb(k, r)


def sequences_png(batch: Batch, r: int, path, rows: int = 4) -> None:
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
            axes[i, j].set_title(f"frame {j}" + (" (target)" if j == 2 else ""), fontsize=7)
        for j in range(d):
            axes[i, t + j].imshow(flow_rgb(batch.labels[i, j], r))
            axes[i, t + j].set_title(f"motion f{sources(t)[j]}->f2", fontsize=7)
        v = batch.velocity[i, 0].tolist()
        axes[i, -1].imshow(wheel_rgb(r), extent=(-r - .5, r + .5, r + .5, -r - .5))
        axes[i, -1].set_title(f"legend; v={tuple(v)}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def panel_png(model, config, batch: Batch, path) -> None:
    """Per test sequence: inputs, true and predicted motion, attention, reconstruction, error."""
    from motioncore.model import predict_batch

    plt = _plt()
    model.eval()
    p = predict_batch(model, batch.frames)
    pred, fused = p.classes, p.recon
    r, t, d = config.motion_range, config.frames, config.directions
    target = batch.frames[:, 2]
    titles = [f"frame {i}" for i in range(t)]
    titles += [f"true f{sources(t)[j]}" for j in range(d)] + [f"pred f{sources(t)[j]}" for j in range(d)]
    titles += ["attention A"] if t == 5 else []
    titles += ["reconstruction", "|error|"]
    n = batch.frames.shape[0]
    fig, axes = plt.subplots(n, len(titles), figsize=(1.5 * len(titles), 1.6 * n), squeeze=False)
    for i in range(n):
        cells = [(batch.frames[i, j], "gray", 1) for j in range(t)]
        cells += [(flow_rgb(batch.labels[i, j], r), None, None) for j in range(d)]
        cells += [(flow_rgb(pred[i, j], r), None, None) for j in range(d)]
        if t == 5:
            cells.append((p.attention[i], "coolwarm", 1))
        cells += [(fused[i], "gray", 1), ((fused[i] - target[i]).abs(), "magma", 0.5)]
        for j, (img, cmap, vmax) in enumerate(cells):
            img = img.cpu().numpy() if torch.is_tensor(img) else img
            axes[i, j].imshow(img, cmap=cmap, vmin=0 if cmap else None, vmax=vmax)
            if i == 0:
                axes[i, j].set_title(titles[j], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    acc = (pred == batch.labels).float().mean().item()
    fig.suptitle(f"{config.supervision} T={t} r={r} attention={config.attention}: "
                 f"acc {acc:.3f} on these sequences (A>0.5 favours forward)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
