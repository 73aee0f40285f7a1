"""The notebooks in notebooks/ (issue 33 item 1): each runs top to bottom in a fresh kernel with the
fast settings (``INCEPTIONNET_NOTEBOOK_FAST=1``: tiny sizes, seconds) and prints what it teaches,
and the committed files carry no outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
KERNEL = "inceptionnet-notebook-test"
# What each notebook must print (in its stream or text outputs): the numbers it exists to show.
EXPECTED: dict[str, list[str]] = {
    "01_inception_module": ["total weights: 163328", "total multiply-adds: 128049152",
                            "equal to torch.cat of the branches: True", "8.5x fewer"],
    "02_googlenet_layers": ["6,990,272 weights", "inception4c", "disagree (7.1%)", "34,019,328 MACs",
                            "1,498,677,248 MACs", "6,624,904 params"],
    "03_train_fashion_mnist": ["epoch 2/2", "test top-1", "misclassified"],
    "04_what_the_network_sees": ["inception5b", "Grad-CAM at inception5b", "branch shares over 8 test images"],
    "05_v1_to_v4": ["two 3x3 / 5x5: params 0.72", "1x7 + 7x1 / 7x7: params 0.29", "InceptionB", "Block35",
                    "12.25 GMACs"],
    "06_backbone": ["feature_info reduction: [1, 1, 1, 2, 4]", "stride 32: (1, 2048, 8, 8)",
                    "fine-tuned    top-1", "from scratch  top-1", "checkpoint runs/finetuned/best.pt"],
}  # fmt: skip
# Pictures each notebook must draw (image/png outputs), at least.
MIN_IMAGES = {"01_inception_module": 1, "03_train_fashion_mnist": 4, "04_what_the_network_sees": 5,
              "05_v1_to_v4": 1, "06_backbone": 1}  # fmt: skip


def kernel_manager(tmp: Path) -> KernelManager:
    """A kernel on this interpreter (the venv's, whatever kernels Jupyter has installed elsewhere),
    in fast mode, one thread (the suite runs test processes side by side)."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    env = {"INCEPTIONNET_NOTEBOOK_FAST": "1", "OMP_NUM_THREADS": "1", "INCEPTIONNET_NO_DOWNLOAD": "1",
           "INCEPTIONNET_NO_PROGRESS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # fmt: skip
    argv = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python", "env": env})
    )
    ksm = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm)


def output_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def image_count(nb: Any) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type in ("execute_result", "display_data")
    )


def test_there_are_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "seeds/0" in first.source, (
        "open with what it teaches and its article"
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"strip the outputs of {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    work = tmp_path / "cwd"
    work.mkdir()
    km = kernel_manager(tmp_path)
    client = NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": str(work)}})
    try:
        client.execute()  # raises CellExecutionError, naming the cell, on the first error
    finally:  # a kernel the client did not create outlives execute(): stop it (torch holds memory)
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = output_text(nb)
    for needle in EXPECTED[path.stem]:
        assert needle in text, f"{path.name} does not print {needle!r}"
    assert image_count(nb) >= MIN_IMAGES.get(path.stem, 0)
