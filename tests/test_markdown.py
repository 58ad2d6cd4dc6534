"""seglib.studies.markdown: numbers and tables as the generated documentation prints them."""

from seglib.studies.markdown import f3, table, with_ci


def test_numbers_have_three_decimals_and_an_interval_its_dash():
    assert f3(0.91149) == "0.911" and f3("1") == "1.000"
    assert with_ci(0.9114, [0.8829, 0.935]) == "0.911 (0.883–0.935)"


def test_a_table_has_its_header_rule_and_rows():
    assert table(["model", "IoU"], [["unet", "0.911"], ["smp", 0.9]]) == (
        "| model | IoU |\n|---|---|\n| unet | 0.911 |\n| smp | 0.9 |")


def test_a_row_names_its_device_in_words_and_a_variant_without_one_names_none():
    from seglib.studies.markdown import on_device

    assert on_device("cpu") == " (2 CPU cores)" and on_device("cuda (NVIDIA H100 80GB HBM3)") == \
        " (one NVIDIA H100 80GB HBM3)"
    assert on_device("") == ""
