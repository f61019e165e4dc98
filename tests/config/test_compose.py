"""Every option of every config group composes; typos fail at compose time, naming the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from kdrun.config.store import cell_dirname
from kdrun.plugins import load_plugins
from kdrun.losses import loss_classes
from kdrun.models import list_models

GROUPS = ["teacher", "student", "loss", "scheme", "algorithm", "task", "data", "optim", "sched",
          "trainer", "logger", "paths"]


def group_options() -> list[tuple[str, str]]:
    load_plugins()
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return [(g, o) for g in GROUPS for o in loader.get_group_options(g)]


OPTIONS = group_options()


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option, compose_cfg):
    cfg = compose_cfg([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if group == "loss":
        assert list(cfg.loss) == [option]
        assert loss_classes()[option].knowledge in {"response", "feature", "relation", "none"}


def test_groups_have_their_options():
    options = {}
    for group, option in OPTIONS:
        options.setdefault(group, set()).add(option)
    assert options["teacher"] == options["student"] == set(list_models()) | {"timm"}
    assert {"resnet50", "mobilenet", "resnet56", "wrn_40_2", "vgg13_cifar"} <= options["teacher"]
    assert options["loss"] == set(loss_classes())
    assert {"digits", "fashion_mnist", "cifar10", "cifar100", "imagefolder"} <= options["data"]


def test_loss_list_composes_each_method_with_its_schema(compose_cfg):
    cfg = compose_cfg(["loss=[at,kd]", "loss.kd.temperature=2", "loss.at.beta=10"])
    assert list(cfg.loss) == ["at", "kd"]
    assert cfg.loss.kd.temperature == 2.0 and cfg.loss.at.beta == 10.0
    assert cfg.loss.kd.alpha == 0.9  # the paper default from the schema


def test_timm_choice_needs_a_name(compose_cfg):
    cfg = compose_cfg(["teacher=timm", "teacher.name=resnet18"])
    assert cfg.teacher.name == "resnet18" and cfg.teacher.train.epochs >= 0
    assert OmegaConf.is_missing(compose_cfg(["teacher=timm"]).teacher, "name")


@pytest.mark.parametrize("override,key", [
    ("loss.kd.temprature=2", "temprature"),
    ("trainer.epoch=3", "epoch"),
    ("data.max_trian=10", "max_trian"),
    ("teacher.train.lr=0.1", "lr"),
])
def test_typo_fails_at_compose_naming_the_key(override, key, compose_cfg):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([override])
    assert key in str(err.value) + str(err.value.__cause__)


def test_wrong_type_fails_at_compose(compose_cfg):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["loss.kd.temperature=hot"])
    assert "temperature" in str(err.value) + str(err.value.__cause__)


def test_unknown_option_lists_the_known_ones(compose_cfg):
    with pytest.raises(Exception) as err:
        compose_cfg(["loss=kdd"])
    assert "kdd" in str(err.value) and "kd" in str(err.value)


def test_task_is_classification_by_default_and_by_name(compose_cfg):
    from kdrun.tasks import list_tasks, task_for

    assert compose_cfg().task.name == "classification"
    cfg = compose_cfg(["task=classification"])
    assert cfg.task.name == "classification" and task_for(cfg.task).name == "classification"
    assert {o for g, o in OPTIONS if g == "task"} == set(list_tasks())


def test_unknown_task_fails_naming_the_options(compose_cfg):
    with pytest.raises(Exception) as err:  # Hydra's MissingConfigException, as for loss=kdd
        compose_cfg(["task=nope"])
    assert "task/nope" in str(err.value) and "classification" in str(err.value)
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["task.nmae=x"])
    assert "nmae" in str(err.value) + str(err.value.__cause__)


def test_cell_dirnames_are_readable_stable_and_safe():
    assert cell_dirname("loss.kd.alpha=0.5,seed=1") == "loss.kd.alpha=0.5,seed=1"
    assert cell_dirname("") == "default"
    assert "/" not in cell_dirname("data.root=/tmp/x,loss=[at,kd]")
    long = ",".join(f"k{i}=v{i}" for i in range(60))
    assert len(cell_dirname(long)) < 200 and cell_dirname(long) == cell_dirname(long)
    assert cell_dirname(long) != cell_dirname(long + ",x=1")


def test_hydra_job_settings(tmp_path):
    load_plugins()
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[f"paths.output_dir={tmp_path}"])
    assert cfg.hydra.job.chdir is False
    assert "kdrun.cell" in OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["subdir"]


@pytest.mark.parametrize("recipe", ["survey_cpu", "methods_digits", "crd_cifar100",
                                    "imagenet_r34_r18", "tuned_kd"])
def test_a_recipe_fixes_its_sweep_dir(recipe, tmp_path):
    """A recipe's hydra.sweep.dir wins over the primary config's timestamped default, so
    rerunning the recipe finds its cells (and kdrun-table its documented dir)."""
    load_plugins()
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[f"experiment={recipe}", f"paths.output_dir={tmp_path}"])
    sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    assert sweep["dir"] == f"${{paths.output_dir}}/multiruns/{recipe}"
    assert cfg.hydra.sweeper.params  # the grid comes with it
