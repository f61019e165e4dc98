"""Reading cells: recursive, several dirs, identity from overrides, missing cells counted."""

from __future__ import annotations

from kdrun.report.collect import collect_cells, config_of

MULTIRUN = """\
hydra:
  sweeper:
    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper
    max_batch_size: null
    params: null
  overrides:
    task:
    - logger=none
    - loss.kd.temperature=1,4
    - seed=0,1
    - paths.output_dir=/elsewhere
"""


def test_config_drops_seed_and_settings_that_do_not_change_a_result():
    config, seed = config_of({"teacher": "resnet32", "student": "resnet8", "loss": ["at", "kd"],
                              "scheme": "offline", "algorithm": "vanilla", "data": "digits",
                              "seed": 3, "overrides": ["loss=[at,kd]", "seed=3", "logger=none",
                                                       "logger.mode=offline", "trainer.progress=False",
                                                       "paths.cache_dir=/c", "+loss.kd.temperature=4"]})
    assert seed == "3"
    assert config == {"teacher": "resnet32", "student": "resnet8", "loss": "at+kd",
                      "scheme": "offline", "algorithm": "vanilla", "data": "digits",
                      "loss.kd.temperature": "4"}


def test_cells_are_found_recursively_in_several_dirs(tmp_path, cell):
    cell(tmp_path / "a", ["seed=0"], 70.0)
    cell(tmp_path / "b" / "nested", ["seed=1"], 72.0)
    cell(tmp_path / "b" / "nested", ["seed=2"], status="failed")
    cells = collect_cells([tmp_path / "a", tmp_path / "b"])
    assert sorted(c.seed for c in cells) == ["0", "1", "2"]
    assert {c.status for c in cells} == {"completed", "failed"}
    assert len({tuple(sorted(c.config.items())) for c in cells}) == 1  # one group over seeds


def test_the_same_cell_in_two_dirs_counts_once(tmp_path, cell, caplog):
    cell(tmp_path / "a", ["seed=0"], status="failed")
    cell(tmp_path / "b", ["seed=0"], 70.0)
    cells = collect_cells([tmp_path / "a", tmp_path / "b"])
    assert [c.status for c in cells] == ["completed"]
    assert "the same cell" in caplog.text


def test_cells_the_sweep_planned_but_never_wrote_are_missing(tmp_path, cell):
    sweep = tmp_path / "sweep"
    (sweep).mkdir()
    (sweep / "multirun.yaml").write_text(MULTIRUN)
    cell(sweep, ["loss.kd.temperature=1", "seed=0"], 70.0)
    cell(sweep, ["loss.kd.temperature=1", "seed=1"], status="running")
    started = sweep / "loss.kd.temperature=4,seed=0"  # Hydra made the dir, the cell died early
    (started / ".hydra").mkdir(parents=True)
    (started / ".hydra" / "overrides.yaml").write_text(
        "- logger=none\n- loss.kd.temperature=4\n- seed=0\n")
    cells = collect_cells([sweep])
    by = {(c.config["loss.kd.temperature"], c.seed): c for c in cells}
    assert set(by) == {("1", "0"), ("1", "1"), ("4", "0"), ("4", "1")}
    assert by["4", "0"].status == by["4", "1"].status == "missing"
    assert by["4", "0"].dir == started
    # identity keys are borrowed from a sibling that wrote its result.json
    assert by["4", "1"].config["teacher"] == "resnet32" and by["4", "1"].config["loss"] == "kd"


def test_an_unreadable_result_json_is_missing_not_a_number(tmp_path, cell, caplog):
    cell(tmp_path, ["loss.kd.temperature=1", "seed=0"], 70.0)
    torn = cell(tmp_path, ["loss.kd.temperature=1", "seed=1"], 71.0)
    (torn / ".hydra").mkdir()
    (torn / ".hydra" / "overrides.yaml").write_text("- loss.kd.temperature=1\n- seed=1\n")
    (torn / "result.json").write_text('{"status": "compl')
    cells = sorted(collect_cells([tmp_path]), key=lambda c: c.seed)
    assert [(c.seed, c.status) for c in cells] == [("0", "completed"), ("1", "missing")]
    assert cells[0].config == cells[1].config  # same group, so the mean says "1 of 2"
    assert "unreadable" in caplog.text
