import pytest

from clf import ConfigError, RunConfig


def test_defaults_follow_the_tutorial():
    c = RunConfig()
    assert (c.backbone, c.lr, c.head, c.loader, c.export, c.weights) == (
        "vgg16", 1e-3, "softmax", "directory", ("h5",), "imagenet")


@pytest.mark.parametrize("field,value,needle", [
    ("epochs", 0, "Invalid epochs 0"),
    ("batch_size", -1, "Invalid batch_size -1"),
    ("classes", 1, "at least two classes"),
    ("lr", 0, "Invalid lr 0"),
    ("validation_split", 1.0, "Invalid validation_split 1.0"),
    ("dropout", 1.5, "Invalid dropout"),
    ("epochs", True, "Invalid epochs True"),
    ("image_size", 4, "Invalid image_size 4"),
])
def test_invalid_values_name_the_field_and_value(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        RunConfig(**{field: value})


def test_export_accepts_comma_list_and_weights_is_normalised():
    c = RunConfig(export="h5, keras", weights="None")
    assert c.export == ("h5", "keras") and c.weights == "none"
    assert RunConfig(weights=None).weights == "none"


def test_from_mapping_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ConfigError, match="'epoch'"):
        RunConfig.from_mapping({"epoch": 3})
    c = RunConfig(epochs=3, export=("h5",), classes=4)
    assert RunConfig.from_mapping(c.to_dict()) == c
