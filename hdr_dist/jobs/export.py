"""``hdr export`` / ``python jobs/export.py``: a trained model as one ONNX or TorchScript file, with what
a serving stack needs (labels, temperature, input scaling, recipe) in its metadata (``models.export``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from hdr_dist.common.errors import UserError
from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser
from hdr_dist.models import checkpoints, export

DESCRIPTION = (
    "Export a model trained by compare as one ONNX or TorchScript file that "
    "carries its labels, temperature, input scaling and recipe."
)


def parser(prog: str = "hdr export") -> Parser:
    p = Parser(prog=prog, description=DESCRIPTION)
    p.add_argument("results", metavar="RESULTS", help="a compare --output folder, or a model.pt checkpoint")
    p.add_argument(
        "--model-name",
        help="which model of that folder (default: the most accurate digit model; name crnn for fields)",
    )
    p.add_argument(
        "--format", choices=export.FORMATS, default="onnx", help="the file's format (default: %(default)s)"
    )
    p.add_argument(
        "--output", required=True, metavar="FILE", help="the file to write (replaced if it exists)"
    )
    return p


def check_output(output: str) -> Path:
    path = Path(output).expanduser()
    folder = path.parent
    if path.is_dir():
        raise UserError(f"--output {output}: a folder; name the file to write")
    if not folder.is_dir():
        raise UserError(f"--output {output}: no folder {folder} to write it in")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--output {output}: folder {folder} is not writable")
    return path


def run(args: argparse.Namespace, console: Console) -> int:
    output = check_output(args.output)
    state, cfg, checkpoint = checkpoints.for_scoring(args.results, args.model_name)
    try:
        export.write(state, output, args.format)
    except OSError as e:
        raise UserError(f"--output {args.output}: cannot write ({e.strerror or e})") from None
    console.print(
        f"export: {output} ({args.format}, model {cfg.model}, {cfg.kind} reader, "
        f"{output.stat().st_size:,} bytes) from {checkpoint}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    return 0


def main(argv=None, prog: str = "hdr export") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command again", flags={"model": "RESULTS"})
