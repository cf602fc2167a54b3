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
      "| impl | seconds |\n|---|---|\n| a | 1.2 |\n| b | 0.00012 |\n\n"
      "<sub>commit and date not recorded</sub>\n"   # a file without provenance
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
      "load (1-min) 0.5; 2026-12-01T12:00:00</sub>"]


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


def test_provenance_line_other_schemas_and_missing_fields():
  """Bench scripts wrote provenance under different keys; the line reads
  them all and names what the file does not record."""
  doc = {"rows": ROWS, "loadavg_before": [2.0, 1.0, 1.0],
         "loadavg_after": [3.0, 1.0, 1.0],
         "rounds": [{"jax": "0.10.2", "numpyro": "0.22.0", "device": "cpu:0"}]}
  assert regen_docs._provenance_line(doc) == (
      "<sub>jax 0.10.2, numpyro 0.22.0; cpu:0; load (1-min) before 2, after 3;"
      " commit and date not recorded</sub>")


def test_hand_edited_table_inside_block_fails_check(tmp_path):
  text = "<!-- BEGIN generated:t columns=\"impl|sec\" -->\n<!-- END generated:t -->\n"
  root = _root(tmp_path, text)
  assert regen_docs.check_files(["DOC.md"], root, write=True) == ["DOC.md"]
  good = (tmp_path / "DOC.md").read_text()
  assert regen_docs.check_files(["DOC.md"], root) == []
  (tmp_path / "DOC.md").write_text(good.replace("| a | 1.2346 |",
                                                "| a | 1.1 |"))
  assert "| a | 1.2346 |" in good
  assert regen_docs.check_files(["DOC.md"], root) == ["DOC.md"]


def test_committed_doc_edited_by_hand_fails_check(tmp_path):
  """The same for the real BENCHMARKS.md: change one generated number."""
  import shutil
  with open(regen_docs.os.path.join(regen_docs.ROOT, "BENCHMARKS.md")) as f:
    text = f.read()
  edited = text.replace("| concrete | mfvi | 5.353", "| concrete | mfvi | 5.000")
  assert edited != text
  for sub in (("bench", "results"), ("docs", "results_gpu")):
    shutil.copytree(regen_docs.os.path.join(regen_docs.ROOT, *sub),
                    tmp_path.joinpath(*sub))
  (tmp_path / "BENCHMARKS.md").write_text(text)
  assert regen_docs.check_files(["BENCHMARKS.md"], str(tmp_path)) == []
  (tmp_path / "BENCHMARKS.md").write_text(edited)
  assert regen_docs.check_files(["BENCHMARKS.md"], str(tmp_path)) == [
      "BENCHMARKS.md"]


def test_pivot_ratio_and_where(tmp_path):
  rows = [{"est": "p", "s": 1, "a": 4.0, "b": 2.0},
          {"est": "p", "s": 10, "a": 9.0, "b": 3.0},
          {"est": "q", "s": 1, "a": 1.0, "b": 2.0}]
  text = ("<!-- BEGIN generated:t pivot=\"est|s:S = {}|a/b:{:.2g}x\" "
          "provenance=0 -->\n<!-- END generated:t -->")
  out = regen_docs.regenerate(text, _root(tmp_path, text, rows=rows))
  assert out.split("\n")[1:-1] == [
      "| est | S = 1 | S = 10 |", "|---|---|---|", "| p | 2x | 3x |",
      "| q | 0.5x |  |"]
  text2 = ("<!-- BEGIN generated:t where=est=q columns=\"est|a\" provenance=0 "
           "-->\n<!-- END generated:t -->")
  assert regen_docs.regenerate(text2, str(tmp_path)).split("\n")[3] == (
      "| q | 1.0000 |")


def test_text_block(tmp_path):
  (tmp_path / "r.json").write_text(json.dumps(
      {"speed": {"x": 1.5, "y": 2.5}, "rows": [{"a.b": 3}]}))
  opts = {"source": "r.json",
          "template": "{speed.x:.1f}x and {speed.y}; min {min(speed.*):.2f}; "
                      "{count(speed.*)} values; >= 2: {met(speed.*>=2)}; "
                      "> 1: {met(speed.*>1)}; dotted key {rows.0.a.b}"}
  assert regen_docs.render_text(str(tmp_path), opts) == (
      "1.5x and 2.5; min 1.50; 2 values; >= 2: **not met**; > 1: met; "
      "dotted key 3")


def test_command_block_equals_recorded_args(tmp_path):
  """The command printed in the docs is the one recorded in the JSON: its
  ``command`` verbatim, else rebuilt from ``args``."""
  (tmp_path / "a.json").write_text(json.dumps(
      {"args": {"rounds": 3, "repeats": 5, "out_dir": "/x"}}))
  (tmp_path / "c.json").write_text(json.dumps(
      {"command": "bench/c.py --n 2", "args": {"n": 2}}))
  root = str(tmp_path)
  assert regen_docs.render_command(root, {
      "source": "a.json", "script": "bench/a.py", "omit": "out_dir"}) == (
          "`python bench/a.py --rounds 3 --repeats 5`")
  assert regen_docs.render_command(root, {"source": "c.json"}) == (
      "`python bench/c.py --n 2`")


def test_benchmarks_numpyro_commands_match_json():
  """Issue 13: BENCHMARKS.md's NumPyro command lines equal the JSON's."""
  import shlex
  with open(regen_docs.os.path.join(regen_docs.ROOT, "BENCHMARKS.md")) as f:
    text = f.read()
  for name in ("bnn_step_vs_numpyro", "core_vs_numpyro", "nuts_vs_numpyro",
               "reparam_vs_numpyro"):
    doc = json.load(open(regen_docs.os.path.join(
        regen_docs.ROOT, "bench", "results", f"{name}.json")))
    line = next(ln for ln in text.split("\n")
                if ln.startswith("`") and f"bench/{name}.py" in ln)
    tokens = shlex.split(line.strip("`"))
    recorded = {k: str(v) for k, v in doc["args"].items()}
    given = dict(zip(tokens[2::2], tokens[3::2]))
    assert given, line
    for flag, value in given.items():
      assert recorded[flag.lstrip("-")] == value, (name, flag)


def test_gpu_run_line(tmp_path):
  (tmp_path / "docs" / "results_gpu").mkdir(parents=True)
  (tmp_path / "docs" / "results_gpu" / "runtimes.txt").write_text(
      "a rc=0 seconds=30\nb rc=1 seconds=9\nGPU 0: NVIDIA X1 (UUID: 1)\n"
      "jax 0.11.2 flax 0.12.10 [CudaDevice(id=0)]\n")
  assert regen_docs.render_gpu_run(str(tmp_path), {}) == (
      "NVIDIA X1; jax 0.11.2, flax 0.12.10; 2 experiments started together "
      "(`docs/results_gpu/runtimes.txt`; commit and date not recorded).")
