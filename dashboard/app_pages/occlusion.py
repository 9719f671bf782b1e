"""Occlusion, live: hide the pixels a map ranks highest and watch the prediction move.

The map is computed once per image, model, target and method (`resources.maps`), and so are its
deletion, insertion and allegiance curves (`resources.evaluation_curves`). The fraction and fill controls,
the occluded image and the top-5 bars live in one fragment: moving the slider re-runs only that
fragment and its single forward pass (`engines.occlude`). Below it: which way the prediction
moves when the positive and negative pixels turn black or white, and a box hidden by hand.
"""

from __future__ import annotations

import json

import streamlit as st

import engines
from dashboard import resources, state, views, widgets
from dashboard.selection import Selection, current

# Maps whose record says they are cheap enough to compute while a person waits: offered first.
CHEAP = tuple(m for m in engines.methods() if engines.method_info(m).live)

FILLS = engines.OCCLUSION_FILLS
FILL_LABELS = {
    "black": "black (0)", "white": "white (1)", "grey": "grey (0.5)", "mean": "the image's mean colour",
    "blur": "a blurred copy", "noise": "uniform noise", "gaussian_noise": "noise in the image's colours",
    "darker": "darker by a step", "brighter": "brighter by a step",
}
# Images the four curves run: 51 points each for deletion and insertion (50 steps), the paper's
# fractions plus the clean image for each allegiance curve.
CURVE_FORWARD_PASSES = 2 * 51 + 2 * (len(engines.PAPER_FRACTIONS) + 1)
SIGNED_PAIR = ("negative", "positive")
WHICH_WAY = (("positive", "black"), ("positive", "white"), ("negative", "black"), ("negative", "white"))


def method_label(name: str) -> str:
    label = engines.method_info(name).label
    return label if name in CHEAP else f"{label} (slow)"


def fill_picker(key: str, step_key: str | None = None) -> tuple[str, float]:
    """The fill selectbox, plus the darker/brighter step where that fill is chosen."""
    fill = st.selectbox("Fill", FILLS, format_func=FILL_LABELS.get, key=key,
                        help="What the hidden pixels become, whole pixels (all channels), in pixel units.")
    if step_key and fill in ("darker", "brighter"):
        return fill, st.slider("Step (pixel units)", 0.0, 1.0, 0.1, 0.05, key=step_key,
                               help="How much darker or brighter the hidden pixels get, clipped to [0, 1].")
    return fill, 0.1


def probability_metric(label: str, selection: Selection, occluded: engines.Occluded) -> float:
    """The target's probability after occlusion, as a metric with the change from the clean image."""
    clean = float(selection.prediction.probabilities[0, selection.target])
    now = float(occluded.probabilities[0, selection.target])
    st.metric(label, f"{now:.2%}", delta=f"{(now - clean) * 100:+.1f} points from {clean:.1%}")
    return now


def top_class_note(selection: Selection, occluded: engines.Occluded, short: bool = False) -> str:
    """Whether the clean image's top class survived the occlusion, as markdown."""
    before = selection.prediction.top(1)[0][0]
    after = int(occluded.probabilities[0].argmax())
    if after == before:
        return "top class kept" if short else f"top class kept: {selection.class_name(before)}"
    if short:
        return f"top class now **{selection.class_name(after)}**"
    return f"top class **changed** to {selection.class_name(after)} (was {selection.class_name(before)})"


def line(name: str, curve: engines.Curve) -> tuple[str, object, object]:
    """One curve of the first image as `views.curves_chart` draws it, its AUC in the name."""
    return f"{name} (AUC {float(curve.auc[0]):.3f})", curve.fractions.numpy(), curve.values[0].numpy()


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


# ---------------------------------------------------------------- the page
selection = current()
loaded, x, classes, target = selection.model, selection.x, selection.classes, selection.target
st.title("Occlusion, live")
st.caption(
    f"Hide the pixels a map ranks highest and watch the model's answer for **{classes[target]}** move. "
    "Each move of a slider runs the model once; the maps and curves are computed once per image, model, "
    "target and map."
)

# ---------------------------------------------------------------- the map that ranks the pixels
names = engines.methods()
ordered = [m for m in CHEAP if m in names] + [m for m in names if m not in CHEAP]
pick, how = st.columns([2, 1])
with pick:
    method = st.selectbox("Map that ranks the pixels", ordered, index=ordered.index("positive"),
                          format_func=method_label, key=state.OCC_METHOD,
                          help="The most salient pixels of this map are hidden first.")
info = engines.method_info(method)
with how:
    if info.signed:
        ranking = st.radio("Rank pixels by", ["value", "magnitude"], horizontal=True, key=state.OCC_RANKING,
                           help="Value: the most positive pixels first, the negative ones last. "
                                "Magnitude: the largest |value| first, whatever its sign.")
    else:
        ranking = "value"
        st.caption(f"{info.label} is never negative: pixels are ranked by value.")
settings = widgets.settings_form(method, len(classes))
note = widgets.rivals_note({method: settings}, len(classes))
if note:
    st.caption(note)
if method not in CHEAP:
    seconds = loaded.estimate_seconds(info.cost(settings, len(classes), tuple(x.shape[-2:])))
    st.warning(f"{info.label} takes about {seconds:.0f} s on {loaded.device} for this image (once; it is "
               f"then kept). The cheap maps are {', '.join(engines.method_info(m).label for m in CHEAP)}.")

settings_json = json.dumps({method: settings}, sort_keys=True)
try:
    with st.spinner(f"Computing the {info.label} map…"):
        pair = resources.maps(selection.model_name, selection.device, selection.digest, x, SIGNED_PAIR,
                              json.dumps({m: {} for m in SIGNED_PAIR}), target)
        ranked = pair[method] if method in pair else resources.maps(
            selection.model_name, selection.device, selection.digest, x, (method,), settings_json, target)[method]
except (ValueError, engines.OutOfMemory) as error:
    st.error(f"The {info.label} map cannot be computed with these settings: {error} "
             "Change its settings above or pick another map.")
    st.stop()
saliency = ranked.map.abs() if ranking == "magnitude" else ranked.map  # (1, H, W)

curves: dict[str, engines.Curve] = {}
estimate = loaded.estimate_seconds(engines.Cost(forward=CURVE_FORWARD_PASSES, backward=0))
try:
    with st.spinner(f"Computing the deletion, insertion and allegiance curves of this map (about {estimate:.0f} s, "
                    "once)…"):
        curves = resources.evaluation_curves(selection.model_name, selection.device, selection.digest, x, ranked.map,
                                             method, settings_json, target, ranking)
except (ValueError, engines.OutOfMemory) as error:
    st.error(f"The curves cannot be computed here: {error} The live view below still works.")


# ---------------------------------------------------------------- the live view
@st.fragment
def live(selection: Selection, saliency, pair: dict[str, engines.Explanation], curves: dict[str, engines.Curve],
         label: str) -> None:
    """Fraction and fill controls, the occluded image and its top 5: one forward pass per move;
    then the curves with a marker at the slider, and which way the prediction moves."""
    loaded, x, target, classes = selection.model, selection.x, selection.target, selection.classes
    controls, picture, answer = st.columns([1, 1.1, 1.3])
    with controls:
        st.subheader("Hide pixels")
        percent = st.slider("Pixels hidden (%)", 0, 100, 10, 1, key=state.OCC_PERCENT,
                            help=f"The most salient pixels by the {label} map, most salient first.")
        fill, step = fill_picker(state.OCC_FILL, state.OCC_STEP)
    fraction = percent / 100
    try:
        occluded = engines.occlude(loaded, x, saliency, fraction, fill, target=target, step=step)
    except (ValueError, engines.OutOfMemory) as error:
        st.error(f"This occlusion cannot run: {error} Pick another fill or fraction.")
        return
    filled = float(occluded.fraction_deleted[0])
    with picture:
        st.image(views.pixelated(views.image_array(occluded.image)), width="stretch",
                 caption=f"{filled:.1%} of the pixels hidden, by the {label} map, with {FILL_LABELS[fill]}")
        if filled < fraction - 0.005:
            st.caption(f"Fewer than {percent}% were hidden: the map is exactly 0 on the other pixels, "
                       "and those are never hidden.")
    with answer:
        now = probability_metric(f"Probability of {classes[target]}", selection, occluded)
        top = engines.Prediction(occluded.logits, occluded.probabilities).top(5)
        highlight = next((rank for rank, (i, _) in enumerate(top) if i == target), None)
        st.plotly_chart(views.top_classes_bar([classes[i] for i, _ in top], [p for _, p in top], highlight),
                        width="stretch", key="occlusion.top5")
        st.markdown(sentence(top_class_note(selection, occluded)))

    if curves:
        deletion, insertion = curves["deletion"], curves["insertion"]
        black, white = curves["allegiance_black"], curves["allegiance_white"]
        left, right = st.columns(2)
        left.plotly_chart(views.curves_chart(
            [line("deletion, black", deletion), line("insertion, from blur", insertion)], fraction,
            title=f"Deletion and insertion: P({classes[target]})", y_title="probability",
            live=(filled, now, f"now ({fill})"),
        ), width="stretch", key="occlusion.curves.probability")
        right.plotly_chart(views.curves_chart(
            [line("black", black), line("white", white)], fraction, steps=True,
            title=f"Allegiance: still {classes[int(black.target[0])]}?", y_title="top class kept (1) or not (0)",
        ), width="stretch", key="occlusion.curves.allegiance")
        left.caption("Deletion (RISE): lower AUC means the map found what the model needs. Insertion: higher is "
                     "better. The dashed line is the slider; the diamond is the live occlusion with your fill.")
        right.caption("Allegiance (Llorente et al. 2023): 1 while the clean image's top class survives hiding "
                      "the most salient pixels; lower AUC is better (0.9 at most).")

    st.subheader("Which way does it move?")
    st.caption("Positive pixels are where brightening raises the score, negative ones where darkening does. If "
               "the model follows the gradient's sign, black hurts most on the positive pixels and white on the "
               f"negative ones. Each image hides {percent}% of the pixels by that map.")
    if st.toggle("Show the four occlusions (four more forward passes per move)", value=True,
                 key=state.OCC_WHICH_WAY):
        for column, (name, way) in zip(st.columns(4), WHICH_WAY):
            with column:
                try:
                    result = engines.occlude(loaded, x, pair[name].map, fraction, way, target=target)
                except (ValueError, engines.OutOfMemory) as error:
                    st.error(f"{name} → {way} cannot run: {error}")
                    continue
                st.image(views.pixelated(views.image_array(result.image)), width="stretch",
                         caption=f"{name} pixels → {way}")
                probability = float(result.probabilities[0, target])
                st.markdown(f"P({classes[target]}) **{probability:.1%}**  \n"
                            + top_class_note(selection, result, short=True))


live(selection, saliency, pair, curves, info.label)


# ---------------------------------------------------------------- a box by hand
def dragged_box(event, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The pixel box of the last rectangle dragged over the picker; None if there is none."""
    boxes = ((event or {}).get("selection") or {}).get("box") or []
    if not boxes:
        return None
    return views.box_from_ranges(boxes[-1]["x"], boxes[-1]["y"], height, width)


def set_box(box: tuple[int, int, int, int]) -> None:
    for key, value in zip(state.OCC_BOX_ROWS + state.OCC_BOX_COLS, box):
        st.session_state[key] = int(value)


@st.fragment
def by_hand(selection: Selection) -> None:
    """Drag a box over the image (or type it) and hide it: one forward pass per change."""
    loaded, x, target = selection.model, selection.x, selection.target
    height, width = x.shape[-2:]
    if st.session_state.get(state.OCC_BOX_FOR) != (selection.model_name, selection.digest, height, width):
        st.session_state[state.OCC_BOX_FOR] = (selection.model_name, selection.digest, height, width)
        st.session_state[state.OCC_BOX_APPLIED] = None
        set_box((height // 4, 3 * height // 4, width // 4, 3 * width // 4))  # the centre quarter
    dragged = dragged_box(st.session_state.get(state.OCC_BOX_CHART), height, width)
    if dragged is not None and dragged != st.session_state.get(state.OCC_BOX_APPLIED):
        st.session_state[state.OCC_BOX_APPLIED] = dragged
        set_box(dragged)

    picker, inputs, answer = st.columns([1.2, 0.8, 1.1])
    with inputs:
        row0 = st.number_input("From row", 0, height - 1, step=1, key=state.OCC_BOX_ROWS[0])
        row1 = st.number_input("To row (not included)", 1, height, step=1, key=state.OCC_BOX_ROWS[1])
        col0 = st.number_input("From column", 0, width - 1, step=1, key=state.OCC_BOX_COLS[0])
        col1 = st.number_input("To column (not included)", 1, width, step=1, key=state.OCC_BOX_COLS[1])
        fill, _ = fill_picker(state.OCC_BOX_FILL)
    box = (int(row0), int(row1), int(col0), int(col1))
    with picker:
        st.plotly_chart(views.box_picker(views.image_array(x), box), on_select="rerun",
                        selection_mode="box", key=state.OCC_BOX_CHART, width="stretch",
                        config={"displaylogo": False})
        st.caption("Drag a box over the image to hide it; the numbers follow. Hover for a pixel's row and "
                   "column.")
    with answer:
        if row1 <= row0 or col1 <= col0:
            st.error(f"The box is empty: “To row” ({row1}) must be larger than “From row” ({row0}), and “To "
                     f"column” ({col1}) larger than “From column” ({col0}). Change the numbers or drag a box over "
                     "the image.")
            return
        try:
            occluded = engines.occlude_box(loaded, x, box, fill, target=target)
        except (ValueError, engines.OutOfMemory) as error:
            st.error(f"This box cannot be hidden: {error} Change the numbers or drag a box over the image.")
            return
        probability_metric(f"Probability of {selection.class_name(target)}, box hidden", selection, occluded)
        st.image(views.pixelated(views.image_array(occluded.image)), width="stretch",
                 caption=f"rows {row0}–{row1 - 1}, columns {col0}–{col1 - 1} hidden with {FILL_LABELS[fill]}")
        st.markdown(sentence(top_class_note(selection, occluded)))


st.subheader("Hide a box by hand")
by_hand(selection)
