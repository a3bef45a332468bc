"""docs/quickstart.ipynb runs top to bottom on SmolLM2 (executed with nbclient in tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import headmaps

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"


def _text(output) -> str:
    return output.data["text/plain"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after execution; the kernel's working folder is a temporary one."""
    work = tmp_path_factory.mktemp("quickstart")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel imports the same headmaps as this test run (a checkout's src/ or the install)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(headmaps.__file__).parents[1]), env.get("PYTHONPATH")) if p)
    # the kernel is a separate process: it runs with this machine's stream precision, a user's
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    old = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    nbformat.write(nb, work / "quickstart.executed.ipynb")
    return nb, work


def _outputs(nb, marker: str, kind: str) -> list:
    """Outputs of ``kind`` (``execute_result``, ``stream``, ``display_data``) of the one cell
    whose source holds ``marker``."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return [o for o in cell.outputs if o.output_type == kind]


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_runs_without_errors(executed):
    nb, _ = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert errors == [], [f"{e.ename}: {e.evalue}" for e in errors]
    # no warnings but tqdm's (huggingface_hub imports tqdm.auto, which warns in a kernel
    # without ipywidgets)
    stderr = [o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"]
    warnings = [line for t in stderr for line in t.splitlines()
                if "Warning" in line and "TqdmWarning: IProgress not found" not in line]
    assert warnings == []
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


def test_quickstart_cells_show_what_they_should(executed):
    nb, work = executed
    (version,) = _outputs(nb, "hm.__version__", "execute_result")
    assert _text(version) == repr(headmaps.__version__)
    (sizes,) = _outputs(nb, "m.n_layers", "execute_result")
    assert _text(sizes) == "(30, 9, 3, 49152)"

    (scan_out,) = _outputs(nb, "scan = hm.scan(", "execute_result")
    html = scan_out.data["text/html"]
    assert "<table" in html and "country_to_capital" in html and "verb_to_past_tense" in html

    figures = _outputs(nb, "scan.figure()", "execute_result") + _outputs(nb, "scan.figure()",
                                                                        "display_data")
    assert any("image/png" in o.data for o in figures)

    (printed,) = _outputs(nb, "hm.salient_operations(", "stream")
    (card,) = _outputs(nb, "hm.salient_operations(", "execute_result")
    head = printed.text.split(":")[0].split()[1]  # "head L.H: country_to_capital score 0.81"
    assert f"<b>head {head}</b> of smollm2-135m" in card.data["text/html"]
    assert card.data["text/html"].count("<tr>") == 8 + 1  # 8 tokens and the header
    (prefs,) = _outputs(nb, "hm.attention_preferences(", "execute_result")
    assert f"content preferences of {head}" in prefs.data["text/html"]
    (profile,) = _outputs(nb, "hm.positional_profile(", "execute_result")
    assert f"positional profile of {head}" in profile.data["text/html"]

    (report,) = _outputs(nb, "hm.report(", "stream")
    assert report.text.startswith("wrote quickstart_report.html")
    page = (work / "quickstart_report.html").read_text(encoding="utf-8")
    assert "smollm2-135m" in page and "country_to_capital" in page
    assert not (NOTEBOOK.parent / "quickstart_report.html").exists()
