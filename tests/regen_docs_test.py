"""Tests for scripts/regen_docs.py, and the check that the committed docs
are what the script writes from the results files."""
import json


from scripts import regen_docs

ROWS = [{"impl": "a", "sec": 1.23456, "n": 3},
        {"impl": "b", "sec": 0.000123, "n": 4}]


def _root(tmp_path, doc_text, rows=ROWS, provenance=None):
  (tmp_path / "bench" / "results").mkdir(parents=True)
  doc = {"rows": rows}
  if provenance:
    doc["provenance"] = provenance
  (tmp_path / "bench" / "results" / "t.json").write_text(json.dumps(doc))
  (tmp_path / "DOC.md").write_text(doc_text)
  return str(tmp_path)


def test_committed_docs_are_regenerated():
  """Fails when a generated table in README.md / BENCHMARKS.md was edited by
  hand or its results file changed without running the script."""
  stale = regen_docs.check_files(regen_docs.DEFAULT_DOCS, write=False)
  assert stale == [], ("run `python -m scripts.regen_docs`; stale: "
                       f"{stale}")


def test_block_is_rendered_between_markers(tmp_path):
  text = ("# T\n<!-- BEGIN generated:t columns=\"impl|sec:seconds:.2g\" -->\n"
          "stale\n<!-- END generated:t -->\nafter\n")
  root = _root(tmp_path, text)
  assert regen_docs.check_files(["DOC.md"], root, write=True) == ["DOC.md"]
  assert (tmp_path / "DOC.md").read_text() == (
      "# T\n<!-- BEGIN generated:t columns=\"impl|sec:seconds:.2g\" -->\n"
      "| impl | seconds |\n|---|---|\n| a | 1.2 |\n| b | 0.00012 |\n"
      "<!-- END generated:t -->\nafter\n")
  # Idempotent: a second run changes nothing.
  assert regen_docs.check_files(["DOC.md"], root, write=True) == []


def test_provenance_line(tmp_path):
  prov = {"git_commit": "0123456789abcdef", "git_dirty": True,
          "versions": {"jax": "0.10.2", "optax": "0.2.8"},
          "platform": {"backend": "gpu", "device_kind": "H200"},
          "load_average": [0.5, 0.4, 0.3], "date_utc": "2026-12-01T12:00:00"}
  text = "<!-- BEGIN generated:t columns=n -->\n<!-- END generated:t -->"
  root = _root(tmp_path, text, provenance=prov)
  out = regen_docs.regenerate(text, root)
  assert out.split("\n")[1:-1] == [
      "| n |", "|---|", "| 3 |", "| 4 |", "",
      "<sub>commit 0123456789 (dirty); jax 0.10.2, optax 0.2.8; gpu (H200); "
      "load [0.5, 0.4, 0.3]; 2026-12-01T12:00:00</sub>"]


def test_registered_renderer(tmp_path, monkeypatch):
  monkeypatch.setitem(regen_docs.RENDERERS, "hello",
                      lambda root, opts: f"hi {opts['rows']}\n")
  out = regen_docs.regenerate(
      "<!-- BEGIN generated:hello rows=x -->\nold\n<!-- END generated:hello -->",
      str(tmp_path))
  assert out == ("<!-- BEGIN generated:hello rows=x -->\nhi x\n"
                 "<!-- END generated:hello -->")


def test_main_check_exit_status(tmp_path, monkeypatch, capsys):
  text = "<!-- BEGIN generated:t columns=n -->\n<!-- END generated:t -->\n"
  root = _root(tmp_path, text)
  monkeypatch.setattr(regen_docs, "ROOT", root)
  assert regen_docs.main(["--check", "DOC.md"]) == 1
  assert "stale: DOC.md" in capsys.readouterr().out
  assert regen_docs.main(["DOC.md"]) == 0
  assert regen_docs.main(["--check", "DOC.md"]) == 0
