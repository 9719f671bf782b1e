"""Learn: a guided tour of what saliency maps say, in four steps on preset examples. The gradient
is a tangent (a first-order view of the model); its sign says brighten or darken; on a saturated
model it is blind while finite changes are not; and on images whose object mask is known we can
check where a map points (docs/methods.md §2, §3; relevance mass and the pointing game)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # also runs on its own: streamlit run dashboard/app_pages/learn.py
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import engines  # noqa: E402
from dashboard import resources, state, views  # noqa: E402
from engines.models import toys  # noqa: E402

STEPS = ("1 · The gradient is a tangent", "2 · Signs matter", "3 · When the gradient is blind", "4 · Ground truth")
CHELSEA = ("efficientnet_lite0", "chelsea")
TOY = ("saturated_toy", "")
SHAPES = "shapes_cnn"
NONLINEAR = "our nonlinear family, after Rosenzweig et al."
TOY_SPAN, TOY_POINTS = 0.5, 21  # the toy's response curve: t in [−0.5, 0.5], 21 steps
GROUND_TRUTH_METHODS = ("gradient", "integrated_gradients", "positive")

# Keep the tour's settings while a step that does not draw their widget is shown.
for key, default in ((state.LEARN_OPACITY, state.DEFAULTS[state.OPACITY]), (state.LEARN_EPSILON, 0.1)):
    st.session_state[key] = st.session_state.get(key, default)


def label(method: str) -> str:
    """A method's short name for a title ("Secant (finite difference)" → "Secant")."""
    return engines.method_info(method).label.split(" (")[0]


def maps(example: tuple[str, str], settings: dict[str, dict]) -> dict[str, engines.Explanation]:
    return resources.learn_maps(*example, tuple(settings), json.dumps(settings, sort_keys=True))


def opacity_slider() -> float:
    return st.slider("Map opacity", 0.1, 1.0, step=0.05, key=state.LEARN_OPACITY,
                     help="How strongly the map covers the image.")


def outline_box(figure: go.Figure, box: tuple[int, int, int, int]) -> go.Figure:
    r0, r1, c0, c1 = box
    figure.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                     line=dict(color=views.OUTLINE, width=2, dash="dot"))
    return figure


def outline_mask(figure: go.Figure, mask: np.ndarray) -> go.Figure:
    figure.add_trace(go.Contour(z=mask.astype(float), contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                                line=dict(color=views.OUTLINE, width=2), showscale=False, hoverinfo="skip"))
    return figure


def show_maps(results: dict[str, engines.Explanation], image: np.ndarray, opacity: float, step: int,
              outline=None) -> None:
    """The maps side by side over the image, each with its own colour scale."""
    for column, (name, result) in zip(st.columns(len(results)), results.items()):
        figure = views.overlay(image, result.map[0].numpy(), signed=result.signed, title=label(name),
                               opacity=opacity, height=300)
        with column:
            st.plotly_chart(outline(figure) if outline else figure, width="stretch", key=f"learn.{step}.{name}")
            if engines.method_info(name).family == "nonlinear":
                st.caption(f"{engines.method_info(name).label}: {NONLINEAR}")


def headline(loaded: engines.LoadedModel, result: engines.Explanation) -> str:
    target = int(result.target[0])
    return f"{loaded.spec.label} sees **{loaded.categories[target]}**; every map explains that class."


st.title("Learn: what a saliency map says")
st.caption("A guided tour in four steps on preset examples. Pick a step; every widget is live.")
step = STEPS.index(st.radio("Step", STEPS, key=state.LEARN_STEP, horizontal=True, label_visibility="collapsed"))

# ---------------------------------------------------------------- 1. the tangent
if step == 0:
    st.subheader("The gradient is a tangent")
    st.markdown(
        "A gradient map asks: *if this pixel changed a tiny bit, how fast would the class score change?* "
        "It is the slope of the model at this one image, a tangent plane, so it describes infinitesimal "
        "changes only. The plain map shows the slope's size; the positive and negative maps split it by "
        "direction."
    )
    opacity = opacity_slider()
    loaded, x = resources.learn_example(*CHELSEA)
    results = maps(CHELSEA, {"gradient": {}, "positive": {}, "negative": {}})
    st.markdown(headline(loaded, results["gradient"]))
    show_maps(results, views.image_array(x), opacity, step)

# ---------------------------------------------------------------- 2. signs
elif step == 1:
    st.subheader("Signs matter")
    st.markdown(
        "The plain gradient map takes |slope| and so forgets the direction. **Positive** marks pixels where "
        "*brightening* raises the score; **negative** marks pixels where *darkening* raises it. The signed "
        "sum over the colour channels shows both at once: red brighten, blue darken (Llorente et al., 2023)."
    )
    opacity = opacity_slider()
    loaded, x = resources.learn_example(*CHELSEA)
    results = maps(CHELSEA, {"positive": {}, "negative": {}, "gradient": {"reduce": "sum"}})
    results = {"positive": results["positive"], "negative": results["negative"], "gradient": results["gradient"]}
    st.markdown(headline(loaded, results["positive"]))
    show_maps(results, views.image_array(x), opacity, step)
    st.caption("Right: the gradient summed over channels (signed). Occluding the positive pixels with black, or the "
               "negative ones with white, is what hurts the prediction; the Occlusion page lets you try it.")

# ---------------------------------------------------------------- 3. saturation
elif step == 2:
    st.subheader("When the gradient is blind")
    st.markdown(
        "This small model detects a bright square (dotted outline). At this image it is *saturated*: the "
        "square is already brighter than the detector needs, so the score sits on a flat plateau and the "
        "gradient is zero everywhere. Yet darkening the square by a finite step ε moves the score a lot. "
        f"The secant and nonlinearity maps ({NONLINEAR}) take finite steps and find the square."
    )
    epsilon = st.slider("Finite step ε (pixel units)", 0.01, 0.5, step=0.01, key=state.LEARN_EPSILON,
                        help="How much each 16-pixel region is brightened and darkened. Below about 0.02 the "
                             "step stays on the plateau and the secant is as blind as the gradient.")
    opacity = opacity_slider()
    loaded, x = resources.learn_example(*TOY)
    settings = {"gradient": {}, "secant": {"epsilon": epsilon, "patch": toys.PATCH},
                "nonlinearity": {"span": epsilon, "patch": toys.PATCH}}
    results = maps(TOY, settings)
    st.markdown(headline(loaded, results["gradient"]))
    for column, name in zip(st.columns(3), settings):
        column.metric(f"{label(name)}: largest value", f"{float(results[name].map.abs().max()):.3g}")
    st.caption(f"Map values are per pixel: a region's change in logits is spread over its {toys.PATCH}² pixels.")
    show_maps(results, views.image_array(x), opacity, step,
              outline=lambda figure: outline_box(figure, toys.toy_region()))
    curve = resources.learn_response(*TOY, toys.toy_region_cell(), TOY_SPAN, TOY_POINTS, toys.PATCH)
    figure = views.response_figure(curve.t.numpy(), curve.scores.numpy(), curve.tangent.numpy(), curve.score,
                                   class_name=loaded.categories[curve.target],
                                   title="The square's true response against the gradient's tangent")
    for t in (-epsilon, epsilon):
        figure.add_vline(x=t, line=dict(color="#555", dash="dot", width=1))
    st.plotly_chart(figure, width="stretch", key="learn.2.response")
    st.caption(f"Tangent slope {curve.slope:.3g}: flat. The true score leaves it by up to {curve.nonlinearity:.3g} "
               "logits. The dotted lines are ±ε: the secant joins the curve's values there.")

# ---------------------------------------------------------------- 4. ground truth
else:
    st.subheader("Ground truth")
    st.markdown(
        "On a real photo nobody knows where the evidence truly is. These procedural shapes come with the "
        "object's mask (outlined), so we can score a map: **relevance mass** is the share of the map's positive "
        "values inside the mask (1 is best), and the **pointing game** asks whether the map's peak lies on the object. "
        "Integrated gradients is signed here: only its positive part counts."
    )
    samples = [name for name in engines.sample_images() if engines.sample_mask(name) is not None]
    if not samples:
        st.error("No sample image with a mask is bundled: add `<name>.mask.png` beside a sample in assets/samples.")
        st.stop()
    sample = st.radio("Shape", samples, key=state.LEARN_SHAPE, horizontal=True,
                      index=samples.index("shapes_star") if "shapes_star" in samples else 0,
                      format_func=lambda name: name.removeprefix("shapes_"))
    opacity = opacity_slider()
    example = (SHAPES, sample)
    loaded, x = resources.learn_example(*example)
    mask = resources.learn_mask(sample, int(x.shape[-1]))
    results = maps(example, {name: {} for name in GROUND_TRUTH_METHODS})
    st.markdown(headline(loaded, results["gradient"]))
    show_maps(results, views.image_array(x), opacity, step,
              outline=lambda figure: outline_mask(figure, mask.numpy()))
    inside = mask
    for column, (name, result) in zip(st.columns(len(results)), results.items()):
        mass = float(engines.relevance_mass(result.map, inside)[0])
        hit = bool(engines.pointing_game(result.map, inside)[0])
        column.metric(f"{label(name)}: relevance mass", "n/a" if np.isnan(mass) else f"{mass:.2f}")
        column.caption(f"Pointing game: {'hit, the peak is on the shape' if hit else 'miss'}.")
