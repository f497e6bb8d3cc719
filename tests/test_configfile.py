"""Config files: clf run --config, CLI overrides, --dry-run, clear errors naming the key."""

import pytest
from typer.testing import CliRunner

from clf import ConfigError, RunConfig
from clf.cli import app
from clf.config import config_from_file, config_to_toml, read_config_file
from conftest import SMALL_BACKBONE, SMALL_SIZE

runner = CliRunner()


def test_config_toml_round_trips(tmp_path):
    cfg = RunConfig(backbone="resnet50", epochs=3, export=("h5",), image_size=96, augment=False, tensorboard=True,
                    weights="none", lr=1e-3)
    path = tmp_path / "run.toml"
    path.write_text(config_to_toml(cfg))
    assert config_from_file(path) == cfg


def test_fields_that_take_a_number_or_text_replay_from_toml(tmp_path):
    # A run's own config.toml with fine-tuning of every layer must replay with --config.
    cfg = RunConfig(fine_tune_layers="all", fine_tune_epochs=1, weights="none")
    path = tmp_path / "run.toml"
    path.write_text(config_to_toml(cfg))
    assert config_from_file(path) == cfg
    path.write_text('center_crop = "none"\nfine_tune_layers = 2\n')
    assert config_from_file(path).center_crop == 0.0 and config_from_file(path).fine_tune_layers == 2
    path.write_text("fine_tune_layers = true\n")
    with pytest.raises(ConfigError, match="fine_tune_layers"):
        config_from_file(path)


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('backbone = "vgg16"\nepoch = 3\n')
    with pytest.raises(ConfigError, match=r"Unknown configuration key\(s\): 'epoch'. Expected only: .*epochs"):
        config_from_file(path)


@pytest.mark.parametrize("line, match", [
    ('epochs = "ten"', r"Invalid epochs 'ten' in .*expected int"),
    ("epochs = 0", r"Invalid epochs 0: expected an integer >= 1.*'epochs' in the config file"),
    ("lr = 5", r"Invalid lr 5: expected a learning rate"),
    ('augment = "yes"', r"Invalid augment 'yes' in .*expected bool"),
    ("[train]\nepochs = 3", r"table\(s\) \[train\]"),
    ("epochs = ", r"is not valid TOML"),
])
def test_bad_values_name_the_key(tmp_path, line, match):
    path = tmp_path / "run.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        config_from_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.toml")


def test_dry_run_prints_effective_toml_flags_override_file_and_nothing_is_written(image_folder, tmp_path):
    path = tmp_path / "run.toml"
    out = tmp_path / "out"
    path.write_text(f'backbone = "{SMALL_BACKBONE}"\ndata = "{image_folder}"\nepochs = 7\nbatch_size = 4\n'
                    f'image_size = {SMALL_SIZE}\nweights = "none"\noutput = "{out}"\n')
    res = runner.invoke(app, ["run", "--config", str(path), "--epochs", "2", "--dry-run"])
    assert res.exit_code == 0, res.output
    toml_part = res.output.split("# backbone")[0]
    effective = tmp_path / "effective.toml"
    effective.write_text(toml_part)
    cfg = config_from_file(effective)
    assert cfg.epochs == 2  # the flag wins over the file's 7
    assert cfg.batch_size == 4 and cfg.backbone == SMALL_BACKBONE  # the file wins over the defaults
    assert "# classes (3): ant, bee, cat" in res.output
    assert "# train: 15 images (ant 5, bee 5, cat 5)" in res.output
    assert "# validation: 3 images (ant 1, bee 1, cat 1)" in res.output
    assert not out.exists()


def test_cli_config_errors_exit_2_naming_the_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("batch_size = -1\n")
    res = runner.invoke(app, ["run", "--config", str(path), "--dry-run"])
    assert res.exit_code == 2 and "Invalid batch_size -1" in res.output
    path.write_text("colour = 1\n")
    res = runner.invoke(app, ["run", "--config", str(path), "--dry-run"])
    assert res.exit_code == 2 and "'colour'" in res.output
