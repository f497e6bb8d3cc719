import textwrap

import pytest

from clf import PluginError, PluginHost, hookimpl
from clf.host.manager import BUILTIN_PLUGINS


def test_builtins_register_through_the_plugin_path(host):
    for name in BUILTIN_PLUGINS:
        info = host.infos[name]
        assert info.builtin and info.distribution == "clf" and info.hooks
    assert host.backbones.get("vgg16").plugin == "clf.plugins.keras_applications"
    assert host.heads.get("softmax").plugin == "clf.plugins.heads"
    assert host.loaders.get("directory").plugin == "clf.plugins.directory_loader"
    assert host.exporters.get("h5").plugin == "clf.plugins.h5_exporter"


def test_every_keras_application_is_a_backbone(host):
    import keras

    ctors = {n for n in dir(keras.applications) if n[0].isupper()}
    from clf.plugins.keras_applications import APPS

    assert ctors == {a.ctor for a in APPS}, "a keras.applications model has no backbone entry"
    for name in ("vgg16", "mobilenet_025", "mobilenet_100", "mobilenet_v2_035", "mobilenet_v2_140",
                 "mobilenet_v3_small_minimalistic_100", "efficientnet_b0", "convnext_tiny"):
        assert name in host.backbones
    assert host.backbones.get("mobilenet_v2").name == "mobilenet_v2_100"


class ExtraHead:
    @hookimpl
    def register_heads(self, register):
        register("tiny", lambda f, n, **k: None, description="test head")


def test_plugin_object_registers_and_unregisters(host):
    info = host.register(ExtraHead(), name="extra")
    assert info.components == {"heads": ["tiny"]} and not info.builtin
    assert host.heads.get("tiny").plugin == "extra"
    host.unregister("extra")
    assert "tiny" not in host.heads and "extra" not in host.infos


def test_duplicate_component_across_plugins_names_both(host):
    class Clash:
        @hookimpl
        def register_heads(self, register):
            register("softmax", lambda f, n, **k: None)

    with pytest.raises(PluginError, match="'clf.plugins.heads' and plugin 'clash'"):
        host.register(Clash(), name="clash")
    assert "clash" not in host.infos and host.heads.get("softmax").plugin == "clf.plugins.heads"


def test_misspelled_hookimpl_is_a_clear_error(host):
    class Typo:
        @hookimpl
        def register_backbone(self, register):  # missing the final "s"
            pass

    with pytest.raises(PluginError) as info:
        host.register(Typo(), name="typo")
    msg = str(info.value)
    assert "'typo'" in msg and "'register_backbone'" in msg and "Did you mean 'register_backbones'" in msg


def test_wrong_hook_argument_is_a_clear_error(host):
    class WrongArg:
        @hookimpl
        def register_heads(self, registrar):
            pass

    with pytest.raises(PluginError, match="'wrongarg'.*registrar"):
        host.register(WrongArg(), name="wrongarg")


def test_plugin_raising_in_hook_is_named(host):
    class Boom:
        @hookimpl
        def register_heads(self, register):
            raise RuntimeError("kaput")

    with pytest.raises(PluginError, match="'boom' raised RuntimeError in hook 'register_heads': kaput"):
        host.register(Boom(), name="boom")


def test_load_plugin_from_file_and_module(tmp_path, monkeypatch):
    src = textwrap.dedent('''
        from clf import hookimpl

        @hookimpl
        def register_heads(register):
            register("from_file", lambda f, n, **k: None)
    ''')
    (tmp_path / "my_plugin.py").write_text(src)
    host = PluginHost(plugins=[str(tmp_path / "my_plugin.py")])
    assert host.heads.get("from_file").plugin == str(tmp_path / "my_plugin.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    host2 = PluginHost(plugins=["my_plugin"])
    assert host2.infos["my_plugin"].origin == "module"


def test_missing_plugin_file_or_module_is_clear():
    with pytest.raises(PluginError, match="does not exist"):
        PluginHost(plugins=["nowhere/plugin.py"])
    with pytest.raises(PluginError, match="'no_such_module_xyz' could not be imported"):
        PluginHost(plugins=["no_such_module_xyz"])
