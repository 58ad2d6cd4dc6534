"""seglib.viz.summary_tables: facts and settings as text tables; a run's settings beside its profile's, the
changed ones marked."""

from seglib.viz.summary_tables import config_table, format_value, key_value_table


def test_values_are_shown_as_text_floats_to_six_significant_digits():
    assert [format_value(v) for v in (0.1 + 0.2, 3, "unet", None)] == ["0.3", "3", "unet", "None"]


def test_a_mapping_becomes_a_two_column_table():
    table = key_value_table({"photos": 290, "mean IoU": 0.91149251}, key="fact")
    assert table.index.name == "fact" and table["value"].tolist() == ["290", "0.911493"]


def test_settings_beside_their_profile_mark_what_changed():
    table = config_table({"epochs": 5, "lr": 0.001, "model": "unet"}, base={"epochs": 40, "lr": 0.001})
    assert table["value"].tolist() == ["5", "0.001", "unet"]
    assert table["profile_default"].tolist() == ["40", "0.001", ""]
    assert table["changed"].tolist() == ["yes", "", ""]
