"""Build the int8 ONNX text encoder: python models/prepare_encoder.py [--models-dir DIR] [--force]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from agent.core.model_prep import SourceModelMissing, prepare_encoder  # noqa: E402


def default_models_dir() -> Path | None:
    try:
        from agent.core.paths import models_dir
    except ImportError:
        return None
    return models_dir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=None, help="default: ownrec's models dir (env OWNREC_MODELS)")
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date encoder exists")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or default_models_dir()
    if models_dir is None:
        parser.error("agent.core.paths is not available; pass --models-dir")
    try:
        prepare_encoder(models_dir, force=args.force)
    except SourceModelMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
