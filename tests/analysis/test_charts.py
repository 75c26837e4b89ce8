"""Chart builders give valid Vega-Lite specs; one PNG renders through vl-convert."""

import pandas as pd
import pytest

from analysis import (AnalysisError, curves_chart, frontier_chart, improvement_chart, improvement_vs, load,
                      lr_sensitivity_chart)
from analysis.charts import optimizer_color, ordered_optimizers, registry_positions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scores(study):
    return load(study, stage="first_order")


def layer_data(spec, mark):
    """Rows of the layer drawn with `mark`, resolved through the spec's named datasets."""
    layer = next(layer for layer in spec["layer"] if (layer["mark"].get("type") if isinstance(layer["mark"], dict)
                                                       else layer["mark"]) == mark)
    return spec["datasets"][layer["data"]["name"]]


def test_frontier_chart_draws_the_front_as_a_step_line(scores):
    spec = frontier_chart(scores[scores["test_set"] == "1200K"]).to_dict()  # to_dict validates the schema
    front = layer_data(spec, "line")
    assert [row["trial_id"] for row in front] == ["lamb_lr0.001_s0", "adam_lr0.001_s0", "adamw_lr0.001_s0"]
    assert spec["layer"][0]["mark"]["interpolate"] == "step-after"
    assert len(layer_data(spec, "point")) == 17  # the diverged trial is not drawn
    assert spec["title"] == "Force RMSE (meV/Å) on 1200K vs wall time (s)"


def test_frontier_chart_needs_one_test_set_and_known_columns(scores):
    with pytest.raises(AnalysisError, match="several test_set values"):
        frontier_chart(scores)
    with pytest.raises(AnalysisError, match="'walltime' is not a column"):
        frontier_chart(scores[scores["test_set"] == "val"], x="walltime")


def test_improvement_chart_spec(scores):
    spec = improvement_chart(improvement_vs(scores[scores["lr"] == 1e-3])).to_dict()
    assert spec["layer"][0]["encoding"]["y"]["title"] == "Improvement over adam (%)"
    assert spec["layer"][0]["encoding"]["xOffset"]["field"] == "test_set"


def test_curves_chart_facets_by_stage(study):
    spec = curves_chart(load(study, table="curves")).to_dict()
    assert spec["facet"]["column"]["field"] == "stage"
    assert spec["spec"]["encoding"]["detail"]["field"] == "trial_id"
    single = curves_chart(load(study, table="curves", stage="first_order"), y="loss", log_y=False).to_dict()
    assert "facet" not in single and single["encoding"]["y"]["field"] == "loss"


def test_lr_sensitivity_chart_spec(scores):
    spec = lr_sensitivity_chart(scores).to_dict()
    assert spec["facet"]["column"]["field"] == "test_set"
    assert spec["spec"]["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    rows = spec["datasets"][spec["data"]["name"]]
    adam = {(row["test_set"], row["lr"]): row["mean"] for row in rows if row["optimizer"] == "adam"}
    assert adam[("val", 1e-3)] == pytest.approx(41.0)


def test_optimizer_order_and_colours_come_from_the_registry_positions_in_the_rows():
    rows = pd.DataFrame({"optimizer": ["lamb", "mine", "sgd", "adam"], "optimizer_order": [5, None, 0, 2]})
    assert ordered_optimizers(rows) == ["sgd", "adam", "lamb", "mine"]
    positions = registry_positions(rows)
    assert optimizer_color("lamb", ["lamb"], {"lamb": 5}) == optimizer_color("lamb", ["sgd", "lamb"], positions)
    assert optimizer_color("mine", ["mine"], positions) not in {optimizer_color(n, [n], positions) for n in positions}
    assert ordered_optimizers(rows.drop(columns="optimizer_order")) == ["lamb", "mine", "sgd", "adam"]


def test_png_renders(scores, tmp_path):
    chart = frontier_chart(scores[scores["test_set"] == "val"])
    chart.save(tmp_path / "front.png")
    png = (tmp_path / "front.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_builders_do_not_modify_their_input(scores):
    before = scores.copy()
    frontier_chart(scores[scores["test_set"] == "val"])
    lr_sensitivity_chart(scores)
    pd.testing.assert_frame_equal(scores, before)


def test_frontier_panels_draw_one_front_per_test_set(scores):
    from analysis.charts import frontier_panels

    spec = frontier_panels(scores).to_dict()
    assert len(spec["concat"]) == scores["test_set"].nunique() > 1 and spec["columns"] == 2


def test_charts_colour_optimizers_in_registry_order(scores):
    ordered = scores.assign(optimizer_order=scores["optimizer"].map({"lamb": 0, "adamw": 1, "adam": 2}))
    for chart in (frontier_chart(ordered[ordered["test_set"] == "val"]), lr_sensitivity_chart(ordered)):
        spec = chart.to_dict()
        layers = spec.get("layer") or spec["spec"]["layer"]
        colour = next(layer["encoding"]["color"] for layer in layers if "color" in layer.get("encoding", {}))
        assert colour["scale"]["domain"] == ["lamb", "adamw", "adam"]
