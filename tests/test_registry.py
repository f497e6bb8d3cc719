import pytest

from clf import PluginError, UnknownComponentError
from clf.host.registry import Head, Registry


def _fn(*a, **k):
    """A head function."""


def test_register_and_get_by_name_and_alias():
    reg = Registry("head", "heads", Head)
    reg.callback("plug")("softmax", _fn, aliases=("dense",))
    assert reg.get("softmax").plugin == "plug"
    assert reg.get("Dense").name == "softmax"
    assert reg.get("softmax").description == "A head function."
    assert "dense" in reg and len(reg) == 1


def test_duplicate_name_names_both_plugins():
    reg = Registry("head", "heads", Head)
    reg.callback("first")("softmax", _fn)
    with pytest.raises(PluginError, match="both plugin 'first' and plugin 'second'"):
        reg.callback("second")("softmax", _fn)
    with pytest.raises(PluginError, match="'first'"):
        reg.callback("second")("other", _fn, aliases=("softmax",))


def test_unknown_name_lists_available():
    reg = Registry("head", "heads", Head)
    reg.callback("p")("softmax", _fn)
    with pytest.raises(UnknownComponentError) as info:
        reg.get("sofmax")
    assert "Unknown head 'sofmax'. Did you mean 'softmax'? Available: softmax. Run 'clf heads' to list them." == str(info.value)


def test_bad_names_and_options_are_plugin_errors():
    reg = Registry("head", "heads", Head)
    with pytest.raises(PluginError, match="lowercase"):
        reg.callback("p")("Bad Name", _fn)
    with pytest.raises(PluginError, match="not callable"):
        reg.callback("p")("ok", 3)
    with pytest.raises(PluginError, match="unexpected options"):
        reg.callback("p")("ok", _fn, colour="red")


def test_remove_plugin_drops_its_components_and_aliases():
    reg = Registry("head", "heads", Head)
    reg.callback("a")("one", _fn, aliases=("uno",))
    reg.callback("b")("two", _fn)
    reg.remove_plugin("a")
    assert reg.names() == ["two"] and "uno" not in reg
