"""Train the bundled facial-expression network on FER2013 (train), choosing everything on valid (PublicTest).

    python recipes/train_face_expression.py prepare            # FER JPEGs -> runs/face_expression/fer_cache.npz
    python recipes/train_face_expression.py train              # resumes from runs/face_expression/<name>
    python recipes/train_face_expression.py export             # float16 model into dmd_pipeline/assets/face_models

Input framing: the network is trained on FER2013's own 48x48 crops, whole. At inference the pipeline makes
a crop with the same framing from the FaceLandmarker landmarks (:mod:`dmd_pipeline.face.crop`: the eyes
are placed where they sit on average in FER's crops, measured by ``calibrate``), so training and inference
see faces framed alike without passing 32k tiny images through the landmarker before training could start.

Training: SGD (Nesterov, momentum 0.9, weight decay 5e-4), one warm-up epoch then a cosine decay, label
smoothing 0.1, an exponential moving average of the weights (the EMA model is the one evaluated and
shipped when it is better on valid), batch augmentation on the fly (mirror, small rotation / scale /
shift, brightness and contrast, random erasing). Valid is scored with test-time mirroring. A checkpoint
(safetensors: weights, EMA weights, momentum buffers, RNG state; JSON: epoch, history) is written after
every epoch, so a stopped run resumes where it stopped.

The PrivateTest part of FER2013 is not used here (kept back for acceptance).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dmd_pipeline.face.network import FER_CLASSES, FaceExpressionNet, FaceNetConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fer2013"
RUN = ROOT / "runs" / "face_expression"
DEST = ROOT / "dmd_pipeline" / "assets" / "face_models" / "fer-face-expression"


# -- data ------------------------------------------------------------------------------------------------
def load_split(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 48, 48) uint8 images and (N,) int64 labels of one split of labels.csv."""
    from PIL import Image

    xs, ys = [], []
    with open(data / "labels.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    for i, r in enumerate(rows):
        with Image.open(data / r["file"]) as im:
            a = np.asarray(im.convert("L").resize((48, 48)) if im.size != (48, 48) else im.convert("L"))
        xs.append(a)
        ys.append(FER_CLASSES.index(r["label"]))
        if (i + 1) % 5000 == 0:
            print(f"  {split}: {i + 1}/{len(rows)}", flush=True)
    return np.stack(xs).astype(np.uint8), np.array(ys, dtype=np.int64)


def prepare(args: argparse.Namespace) -> None:
    """Read every FER train/valid image once into an npz cache (no pickle)."""
    RUN.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    xt, yt = load_split(args.data, "train")
    xv, yv = load_split(args.data, "valid")
    np.savez(RUN / "fer_cache.npz", x_train=xt, y_train=yt, x_valid=xv, y_valid=yv)
    print(f"cached {len(xt)} train, {len(xv)} valid images in {time.time() - t0:.0f} s")


def load_cache() -> dict[str, np.ndarray]:
    with np.load(RUN / "fer_cache.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def calibrate(args: argparse.Namespace) -> None:
    """Measure FER2013's framing: mean eye-centre positions (fractions of the side) in training images where
    FaceLandmarker finds a face after upscaling; the result is the crop template recorded in the model."""
    from dmd_pipeline.face.crop import FaceFinder, eye_centres

    x = load_cache()["x_train"]
    idx = np.random.default_rng(0).choice(len(x), size=min(args.n, len(x)), replace=False)
    pts, t0 = [], time.time()
    with FaceFinder(num_faces=1) as finder:
        for i in idx:
            faces = finder.landmarks(x[i])
            if faces:
                a, b = eye_centres(faces[0], 1, 1)
                pts.append([a[0], a[1], b[0], b[1]])
    p = np.array(pts)
    out = {
        "images": len(idx),
        "faces_found": len(p),
        "seconds": round(time.time() - t0, 1),
        "eye_x": [float(np.median(p[:, 0])), float(np.median(p[:, 2]))],
        "eye_y": float(np.median((p[:, 1] + p[:, 3]) / 2)),
        "eye_x_mean": [float(p[:, 0].mean()), float(p[:, 2].mean())],
        "eye_y_mean": float(((p[:, 1] + p[:, 3]) / 2).mean()),
        "eye_distance_iqr": np.percentile(p[:, 2] - p[:, 0], [25, 50, 75]).round(4).tolist(),
    }
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "calibration.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(out, indent=1))


# -- augmentation ----------------------------------------------------------------------------------------
def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random mirror, rotation (+-10 deg), scale (+-10 %), shift (+-4 px at 48), brightness/contrast and
    random erasing (p 0.5) on a batch (B, 1, H, W) in [0, 1]."""
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=g)

    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    ang, scale = u(-10, 10) * math.pi / 180, u(0.9, 1.1)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, u(-1 / 6, 1 / 6)], 1), torch.stack([sin, cos, u(-1 / 6, 1 / 6)], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * u(0.75, 1.25)[:, None, None, None] + mean + u(-0.1, 0.1)[:, None, None, None]).clamp(
        0, 1
    )
    # random erasing: one rectangle of 2-20 % of the area, aspect 0.3-3.3, filled with noise
    h, w = x.shape[2:]
    area = u(0.02, 0.2) * h * w
    aspect = torch.exp(u(math.log(0.3), math.log(3.3)))
    eh = (area * aspect).sqrt().clamp(max=h)
    ew = (area / aspect).sqrt().clamp(max=w)
    y0 = u(0, 1) * (h - eh)
    x0 = u(0, 1) * (w - ew)
    ys = torch.arange(h, dtype=x.dtype)[None, :, None]
    xs = torch.arange(w, dtype=x.dtype)[None, None, :]
    inside = (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
    inside = inside & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
    inside = inside & (torch.rand(b, generator=g) < 0.5)[:, None, None]
    noise = torch.rand(x.shape, generator=g)
    return torch.where(inside[:, None], noise, x)


# -- evaluation ------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, flip: bool = True, batch: int = 512) -> np.ndarray:
    """Probabilities (N, C) for uint8 images (N, 48, 48), averaged with the mirrored image when ``flip``."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        t = torch.from_numpy(x[i : i + batch]).float().div_(255).unsqueeze(1)
        t = t.contiguous(memory_format=torch.channels_last)
        p = torch.softmax(model(t), 1)
        if flip:
            p = (p + torch.softmax(model(t.flip(3)), 1)) / 2
        out.append(p)
    return torch.cat(out).numpy()


def report(probs: np.ndarray, y: np.ndarray) -> dict:
    from dmd_pipeline.training.metrics import classification_report

    return classification_report(y, probs.argmax(1), probs.shape[1])


# -- checkpoint ------------------------------------------------------------------------------------------
def save_state(path: Path, model, ema, opt, g: torch.Generator, state: dict) -> None:
    """Weights, EMA weights, momentum buffers and RNG state to safetensors; progress to JSON (atomic)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    t: dict[str, torch.Tensor] = {}
    t.update({f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()})
    t.update({f"ema.{k}": v.detach().clone().contiguous() for k, v in ema.state_dict().items()})
    for i, p in enumerate(p for grp in opt.param_groups for p in grp["params"]):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            t[f"opt.{i}"] = buf.detach().clone().contiguous()
    t["rng.gen"] = g.get_state()
    t["rng.torch"] = torch.get_rng_state()
    save_file(t, str(path / "state.safetensors.tmp"))
    os.replace(path / "state.safetensors.tmp", path / "state.safetensors")
    (path / "state.json.tmp").write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(path / "state.json.tmp", path / "state.json")


def load_state(path: Path, model, ema, opt, g: torch.Generator) -> dict | None:
    from safetensors.torch import load_file

    if not (path / "state.json").is_file():
        return None
    t = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")})
    for i, p in enumerate(p for grp in opt.param_groups for p in grp["params"]):
        if f"opt.{i}" in t:
            opt.state[p]["momentum_buffer"] = t[f"opt.{i}"]
    g.set_state(t["rng.gen"])
    torch.set_rng_state(t["rng.torch"])
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


# -- training --------------------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = load_cache()
    xt, yt = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    if args.subset:  # smoke runs only
        xt, yt = xt[: args.subset], yt[: args.subset]
        data["x_valid"], data["y_valid"] = data["x_valid"][: args.subset], data["y_valid"][: args.subset]
    cfg = FaceNetConfig(width=args.width, hidden=args.hidden, dropout=args.dropout)
    torch.manual_seed(args.seed)
    model = FaceExpressionNet(cfg).to(memory_format=torch.channels_last)
    ema = FaceExpressionNet(cfg).to(memory_format=torch.channels_last)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    g = torch.Generator().manual_seed(args.seed)
    ck = RUN / args.name
    state = load_state(ck, model, ema, opt, g) or {"epoch": 0, "step": 0, "history": [], "seconds": 0.0}
    if state["epoch"]:
        print(f"resumed {ck} at epoch {state['epoch']}", flush=True)
    (ck / "args.json").parent.mkdir(parents=True, exist_ok=True)
    (ck / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    n = len(xt)
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=args.smoothing)
    for epoch in range(state["epoch"], args.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(n, generator=g)
        run_loss = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch : (s + 1) * args.batch]
            x = augment(xt[idx].float().div_(255).unsqueeze(1), g).contiguous(
                memory_format=torch.channels_last
            )
            for grp in opt.param_groups:
                grp["lr"] = lr_at(state["step"], total, steps_per_epoch, args.lr)
            loss = lossf(model(x), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1
            d = min(args.ema, (1 + state["step"]) / (10 + state["step"]))
            with torch.no_grad():
                for pe, pm in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
                    if pe.dtype.is_floating_point:
                        pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                    else:
                        pe.copy_(pm)
            run_loss += float(loss.detach())
            if (s + 1) % 50 == 0:
                print(
                    f"  epoch {epoch + 1} step {s + 1}/{steps_per_epoch} loss {run_loss / (s + 1):.4f} "
                    f"({time.time() - t0:.0f} s)",
                    flush=True,
                )
        train_s = time.time() - t0
        rm = report(predict(model, data["x_valid"]), data["y_valid"])
        re = report(predict(ema, data["x_valid"]), data["y_valid"])
        state["seconds"] += time.time() - t0
        state["epoch"] = epoch + 1
        row = {
            "epoch": epoch + 1,
            "train_loss": run_loss / steps_per_epoch,
            "train_s": round(train_s, 1),
            "valid_acc": rm["accuracy"],
            "valid_uar": rm["uar"],
            "valid_acc_ema": re["accuracy"],
            "valid_uar_ema": re["uar"],
            "lr_end": lr_at(state["step"] - 1, total, steps_per_epoch, args.lr),
        }
        state["history"].append(row)
        save_state(ck, model, ema, opt, g, state)
        print(json.dumps(row), flush=True)
    print(f"done: {state['epoch']} epochs, {state['seconds'] / 60:.1f} min", flush=True)


# -- export ----------------------------------------------------------------------------------------------
def export(args: argparse.Namespace) -> None:
    """Ship the run's EMA or raw weights (whichever is better on valid, with mirroring) as float16."""
    from safetensors.torch import load_file

    from dmd_pipeline.face.model import save_face_model

    ck = RUN / args.name
    state = json.loads((ck / "state.json").read_text(encoding="utf-8"))
    run_args = json.loads((ck / "args.json").read_text(encoding="utf-8"))
    cfg = FaceNetConfig(
        width=int(run_args["width"]), hidden=int(run_args["hidden"]), dropout=float(run_args["dropout"])
    )
    t = load_file(str(ck / "state.safetensors"))
    data = load_cache()
    best = None
    for which in ("ema", "model"):
        net = FaceExpressionNet(cfg)
        net.load_state_dict({k[len(which) + 1 :]: v for k, v in t.items() if k.startswith(which + ".")})
        net = net.half().float()  # score what is shipped: float16 weights
        rep = report(predict(net, data["x_valid"]), data["y_valid"])
        print(f"{which}: valid accuracy {rep['accuracy']:.4f} UAR {rep['uar']:.4f}")
        if best is None or rep["accuracy"] > best[1]["accuracy"]:
            best = (which, rep, net)
    which, rep, net = best
    meta = {
        "task": "classification",
        "class_names": list(cfg.classes),
        "licence_note": "trained on FER2013 (released for research): the weights are for research use only",
        "weights": which,
        "training": {
            "data": "FER2013 train (Training usage, 28,709 images)",
            "epochs": state["epoch"],
            "wall_minutes": round(state["seconds"] / 60, 1),
            "args": run_args,
            "history": state["history"],
        },
        "metrics": {"valid": rep, "measured_with": "FER2013 valid (PublicTest), mirrored test-time average"},
    }
    save_face_model(args.dest, net, meta)
    print(
        json.dumps({"dest": str(args.dest), "weights": which, "accuracy": rep["accuracy"], "uar": rep["uar"]})
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", type=Path, default=DATA)
    p = sub.add_parser("calibrate")
    p.add_argument("--n", type=int, default=1000)
    p = sub.add_parser("train")
    p.add_argument("--name", default="w24")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.4)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a busy machine more threads mostly wait on each other)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=0, help="use only the first N images (smoke runs)")
    p = sub.add_parser("export")
    p.add_argument("--name", default="w24")
    p.add_argument("--dest", type=Path, default=DEST)
    args = ap.parse_args(argv)
    {"prepare": prepare, "calibrate": calibrate, "train": train, "export": export}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
