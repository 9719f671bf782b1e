"""Evaluate: how faithful are the chosen maps on the current image? Deletion and insertion
curves (RISE), ROAD curves on request (Rong et al.), allegiance curves (black and white, Llorente et al.), the randomisation sanity
check (Adebayo et al.) and the salient-region sufficiency test (after Thakur & Fischmeister).
docs/methods.md §2, §4–6."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import engines
from dashboard import resources, state, views, widgets
from dashboard.selection import current
from engines.evaluation.sufficiency import FILLS as SUFFICIENCY_FILLS

STARTING = ["gradient", "integrated_gradients", "positive", "negative"]  # cheap: 1–2 passes, 32 for IG
RANKINGS = ["value", "magnitude"]
SHOWN_REFILLS = 6  # refilled images shown per fill (noise and paste make more; all of them count)
# Curves that follow the target's probability: they separate methods even where the top classes
# tie, so they come first. ROAD (Rong et al. 2022: deletion and insertion with noisy linear
# imputation, `engines.road_curve`) joins here, e.g. "road_most" / "road_least", once
# resources.evaluation_curves returns those keys (with a line in BETTER); kinds the curves lack are skipped.
PROBABILITY_KINDS = {  # curve → (column header, figure title, y axis)
    "deletion": ("Deletion AUC (↓ better)", "Deletion: most salient pixels removed first",
                 "probability of the class"),
    "insertion": ("Insertion AUC (↑ better)", "Insertion: most salient pixels put back first",
                  "probability of the class"),
}
# Curves that follow the clean image's top class (kept or lost): flat 0/1 steps, useless when the
# top two classes nearly tie (any change flips the top class, for every map alike).
ALLEGIANCE_KINDS = {
    "allegiance_black": ("Allegiance AUC, black (↓ better)", "Allegiance: salient pixels set to black",
                         "top class kept (1) or lost (0)"),
    "allegiance_white": ("Allegiance AUC, white (↓ better)", "Allegiance: salient pixels set to white",
                         "top class kept (1) or lost (0)"),
}
ROAD_KINDS = {  # shown when asked for: each curve's imputation solves a sparse system, slower than a fill
    "road_most": ("ROAD AUC, most relevant first (↓ better)", "ROAD: most relevant pixels imputed first",
                  "probability of the class"),
    "road_least": ("ROAD AUC, least relevant first (↑ better)", "ROAD: least relevant pixels imputed first",
                   "probability of the class"),
}
KINDS = {**PROBABILITY_KINDS, **ROAD_KINDS, **ALLEGIANCE_KINDS}  # ROAD's curves are there only when asked for
NEAR_TIE = 0.05  # top two classes closer than 5 points of probability: allegiance cannot separate methods
# The sample the page starts on when the sidebar still shows its default (chelsea, where the
# default model's top two classes are 37.0 % and 36.9 %). Measured by predicting every bundled
# sample (`engines.sample_images()`) with the default model (efficientnet_lite0) and taking the
# largest gap between its top two probabilities, the margin a deletion must erase before the top
# class flips: camera (tripod 94.2 %, next 0.8 %: 93.4 points); next coffee (espresso 94.4 %, cup
# 1.6 %: 92.8); then rocket 31.3 / 22.8 %, astronaut 15.4 / 11.5 %, chelsea 37.0 / 36.9 %.
# tests/test_page_evaluate.py measures it again.
CONFIDENT_SAMPLE = "camera"
SIDEBAR_DEFAULT_SAMPLE = "chelsea"  # where the sidebar starts (dashboard/selection.py)

BETTER = {
    "deletion": "Lower is better: the class fades fast when the map's top pixels go.",
    "insertion": "Higher is better: the class comes back fast when the map's top pixels return.",
    "allegiance_black": "Lower is better: blacking out the map's top pixels soon changes the top class.",
    "allegiance_white": "Lower is better: whitening the map's top pixels soon changes the top class.",
    "road_most": "Lower is better: the class fades fast when the map's top pixels are imputed from their "
                 "neighbours (no tell-tale black shape left behind).",
    "road_least": "Higher is better: the class holds while the map's least relevant pixels are imputed.",
}


def label(method: str) -> str:
    return engines.method_info(method).label


def error_box(what: str, error: Exception) -> None:
    if isinstance(error, engines.OutOfMemory):
        st.error(f"{what} does not fit in memory: {error} Choose fewer or cheaper methods, or a smaller model.")
    else:
        st.error(f"{what} cannot run with these settings: {error}")
    st.stop()


def top_two(selection) -> tuple[tuple[str, float], tuple[str, float]]:
    """The clean image's two most probable classes, as (name, probability)."""
    (first, p1), (second, p2) = selection.prediction.top(2)
    return (selection.classes[first], p1), (selection.classes[second], p2)


def is_near_tie(selection) -> bool:
    (_, p1), (_, p2) = top_two(selection)
    return p1 - p2 < NEAR_TIE


def uses_a_sample() -> bool:
    return st.session_state.get(state.UPLOAD) is None


def switch_sample(to: str, why: tuple | None = None) -> None:
    """Shows `to` in the sidebar from the next run on (the sidebar applies it before its widget)."""
    st.session_state[state.SAMPLE_PENDING] = to
    st.session_state[state.EVAL_SWITCHED] = why
    st.rerun()


selection = current()
# The first time the page runs in a session, on the default model and the sidebar's default
# sample (no upload) whose top two classes tie, it starts on the confident sample instead.
if not st.session_state.get(state.EVAL_VISITED):
    st.session_state[state.EVAL_VISITED] = True
    if (selection.model_name == engines.DEFAULT_MODEL and selection.sample == SIDEBAR_DEFAULT_SAMPLE
            and uses_a_sample() and is_near_tie(selection)):
        switch_sample(CONFIDENT_SAMPLE, (SIDEBAR_DEFAULT_SAMPLE, *top_two(selection)))
loaded, x, classes, target = selection.model, selection.x, selection.classes, selection.target
key = (selection.model_name, selection.device, selection.digest)
st.title("Evaluate the maps")
st.caption(
    "Is a map faithful to the model? Remove the pixels it calls important and the score should fall; "
    "put them back first and it should rise; randomise the model's weights and the map should change."
)
switched = st.session_state.get(state.EVAL_SWITCHED)
if switched and selection.sample == CONFIDENT_SAMPLE and uses_a_sample():
    old, (a, pa), (b, pb) = switched
    st.info(f"Evaluating sample “{CONFIDENT_SAMPLE}”, on which the model is confident, rather than “{old}”: "
            f"there its top two classes nearly tie ({a} {pa:.1%}, {b} {pb:.1%}), so most curves could not tell "
            "the methods apart. Any image can be picked in the sidebar.", icon=":material/swap_horiz:")
near_tie = is_near_tie(selection)
if near_tie:
    (a, pa), (b, pb) = top_two(selection)
    st.warning(
        f"The model's top two classes nearly tie: **{a}** {pa:.1%} and **{b}** {pb:.1%}. Hiding almost any pixel "
        "flips the top class, so every map's allegiance curve drops at once and the allegiance AUCs will not "
        "separate the methods. Compare the deletion and insertion curves, which follow the probability of the "
        "target, or evaluate on an image the model is sure of.", icon=":material/warning:")
    if uses_a_sample() and selection.sample != CONFIDENT_SAMPLE and st.button(
            f"Evaluate on sample “{CONFIDENT_SAMPLE}” instead (the model is confident on it)",
            key=state.EVAL_CONFIDENT, icon=":material/swap_horiz:"):
        switch_sample(CONFIDENT_SAMPLE)

# ---------------------------------------------------------------- methods, settings, evaluation settings
chosen = st.multiselect("Methods to evaluate", engines.methods(), default=STARTING, format_func=label,
                        key=state.EVAL_METHODS)
settings = {name: widgets.settings_form(name, len(classes)) for name in chosen}
with st.expander("Evaluation settings"):
    columns = st.columns(4)
    steps = columns[0].slider("Deletion / insertion steps", 10, 100, 25, step=5, key=state.EVAL_STEPS,
                              help="Points on the deletion and insertion curves, one forward pass each. 25 keeps "
                                   "the page quick on a CPU; the areas change little with more.")
    deletion_fill = columns[1].selectbox("Deleted pixels become", engines.OCCLUSION_FILLS, index=0,
                                         key=state.EVAL_DELETION_FILL, help="RISE deletes to black.")
    insertion_start = columns[2].selectbox(
        "Insertion starts from", engines.OCCLUSION_FILLS,
        index=engines.OCCLUSION_FILLS.index("blur"), key=state.EVAL_INSERTION_START,
        help="RISE starts from a blurred copy; black is the empty start.")
    ranking = columns[3].selectbox(
        "Rank the pixels of signed maps by", RANKINGS, key=state.EVAL_RANKING,
        help="value: positive evidence first, negative last (as Captum and Quantus rank). magnitude: |map|, "
             "either sign first. Unsigned maps are never negative, so both rank them alike.")
    with_road = st.checkbox(
        "Add ROAD curves (remove and debias, Rong et al. 2022)", value=False, key=state.EVAL_ROAD,
        help="Deletion with noisy linear imputation instead of a fill: removed pixels take the weighted mean of "
             "their neighbours, so the curve does not reward maps for making odd-looking images. Slower: each "
             "curve solves a sparse linear system (seconds per method on a CPU at 224²).")
if not chosen:
    st.info("Pick at least one method above.")
    st.stop()

settings_json = json.dumps(settings, sort_keys=True)
estimate = sum(loaded.estimate_seconds(engines.method_info(m).cost(settings[m], len(classes), tuple(x.shape[-2:])))
               for m in chosen)
try:
    with st.spinner(f"Computing {len(chosen)} maps (about {estimate:.1f} s on {loaded.device})…"):
        results = resources.maps(*key, x, tuple(chosen), settings_json, target)
except (ValueError, engines.OutOfMemory) as error:
    error_box("These maps", error)


def method_json(name: str) -> str:
    return json.dumps(settings[name], sort_keys=True)


# ---------------------------------------------------------------- deletion, insertion, allegiance
st.header("Deletion, insertion and allegiance")
forwards = 2 * (steps + 1) + 2 * (len(engines.PAPER_FRACTIONS) + 1)
seconds = len(chosen) * loaded.estimate_seconds(engines.Cost(forwards, 0))
curves = {}
try:
    with st.spinner(f"Deleting and inserting pixels: {len(chosen) * forwards} forward passes, "
                    f"about {seconds:.0f} s…"):
        for name in chosen:
            curves[name] = resources.evaluation_curves(
                *key, x, results[name].map, name, method_json(name), target, ranking, steps, deletion_fill,
                insertion_start)
    if with_road:
        with st.spinner("Imputing pixels for the ROAD curves…"):
            for name in chosen:
                curves[name] = {**curves[name], **resources.road_curves(
                    *key, x, results[name].map, name, method_json(name), target, ranking)}
except (ValueError, engines.OutOfMemory) as error:
    error_box("The curves", error)

shown_kinds = [kind for kind in KINDS if kind in curves[chosen[0]]]
table = pd.DataFrame(
    [{"Method": label(name), **{KINDS[kind][0]: float(curves[name][kind].auc[0]) for kind in shown_kinds}}
     for name in chosen]
)
st.dataframe(table, hide_index=True, width="stretch",
             column_config={KINDS[kind][0]: st.column_config.NumberColumn(format="%.3f", help=BETTER.get(kind))
                            for kind in shown_kinds})
st.caption(
    f"Deletion and insertion follow the probability of **{classes[target]}** (RISE: Petsiuk et al. 2018). "
    "Allegiance asks whether the clean image's top class survives when the most salient pixels turn black or "
    "white, on the fractions of Llorente et al. 2023 (its AUC is at most 0.9). Areas are trapezoids over the "
    "fraction of pixels."
    + (" ROAD (Rong et al. 2022) removes pixels by noisy linear imputation instead of a fill, on the fractions "
       "0–90 % (its AUC is at most 0.9)." if with_road else "")
)


def curve_figures(kinds: dict[str, tuple[str, str, str]]) -> None:
    """The curves of `kinds` (those computed), two figures a row, one line per method."""
    present = [kind for kind in kinds if kind in curves[chosen[0]]]
    figures = st.columns(2)
    for index, kind in enumerate(present):
        _, title, y_title = kinds[kind]
        lines = {label(n): (curves[n][kind].fractions.numpy(), curves[n][kind].values[0].numpy()) for n in chosen}
        with figures[index % 2]:
            st.plotly_chart(views.metric_curves(lines, title=title, y_title=y_title), width="stretch",
                            key=f"evaluate.curve.{kind}")


curve_figures({**PROBABILITY_KINDS, **ROAD_KINDS})
if near_tie:
    with st.expander("Allegiance curves (they cannot separate the methods on this image)"):
        curve_figures(ALLEGIANCE_KINDS)
else:
    curve_figures(ALLEGIANCE_KINDS)

# ---------------------------------------------------------------- randomisation sanity check
st.header("Sanity check: randomise the model")
st.caption(
    "Adebayo et al. 2018: re-initialise the model's layers from the output down, one step at a time, and "
    "recompute each map. A map that stays alike (Spearman and SSIM near 1) does not depend on what the "
    "model learned. This runs on a copy; the shared model is never touched."
)
try:
    layer_steps = len(engines.randomisation_steps(loaded.model))
except ValueError as error:
    st.error(f"This model cannot be randomised: {error}")
    layer_steps = 0
if layer_steps:
    cost = sum(loaded.estimate_seconds(engines.method_info(m).cost(settings[m], len(classes), tuple(x.shape[-2:])))
               for m in chosen) * (layer_steps + 1)
    asked = st.session_state.setdefault(state.EVAL_RANDOMISED, [])
    wanted = [[*key, name, method_json(name), target] for name in chosen]
    if all(w in asked for w in wanted):
        run = True
    else:
        run = st.button(f"Run the randomisation check ({layer_steps} steps × {len(chosen)} maps, about {cost:.0f} s)",
                        key=state.EVAL_RANDOMISE)
        if run:
            asked.extend(w for w in wanted if w not in asked)
    if run:
        plots = st.columns(3)
        for index, name in enumerate(chosen):
            try:
                check = resources.randomisation(*key, x, name, method_json(name), target)
            except (ValueError, engines.OutOfMemory) as error:
                error_box("The randomisation check", error)
            with plots[index % 3]:
                st.plotly_chart(
                    views.randomisation_figure(
                        [", ".join(step.layers) for step in check],
                        [float(step.spearman[0]) for step in check], [float(step.ssim[0]) for step in check],
                        title=label(name)),
                    width="stretch", key=f"evaluate.randomisation.{name}",
                )
        st.caption("Step k has re-initialised every layer from the output down to the k-th (hover for names). "
                   "Spearman compares the ranks of |map|; SSIM the structure of |map| / max |map|.")

# ---------------------------------------------------------------- sufficiency
st.header("Is the salient region sufficient?")
st.caption(
    "After Thakur & Fischmeister 2020: keep only the most salient pixels, refill the rest, and ask the model "
    "again. They refill with a GAN; we have none offline, so the rest is blurred, set to the mean colour, "
    "replaced by noise, inpainted (the smoothest continuation of the kept pixels) or taken from the other "
    "sample images."
)
columns = st.columns([2, 3])
keep = columns[0].slider("Fraction of pixels kept", 0.05, 1.0, 0.5, step=0.05, key=state.EVAL_KEEP,
                         help="The most salient pixels of each map are kept; everything else is refilled.")
fills = columns[1].multiselect("Refill the rest with", SUFFICIENCY_FILLS, default=list(SUFFICIENCY_FILLS),
                               key=state.EVAL_FILLS)
if not fills:
    st.info("Pick at least one way to refill the image.")
    st.stop()
reports = {}
try:
    with st.spinner("Refilling and asking the model again…"):
        for name in chosen:
            reports[name] = resources.sufficiency(*key, x, results[name].map, name, method_json(name), target,
                                                  ranking, keep, tuple(fills))
except (ValueError, engines.OutOfMemory) as error:
    error_box("The sufficiency test", error)

first = reports[chosen[0]]
kept_name = classes[int(first.target[0])]
st.dataframe(
    pd.DataFrame([{"Method": label(name), **{fill: reports[name].fractions.get(fill) for fill in fills}}
                  for name in chosen]),
    hide_index=True, width="stretch",
    column_config={fill: st.column_config.NumberColumn(f"{fill} (↑ better)", format="percent")
                   for fill in fills},
)
st.caption(f"The fraction of refilled images the model still calls **{kept_name}**, per map and refill.")
if int(first.original[0]) != int(first.target[0]):
    st.info(f"The clean image is classified as {classes[int(first.original[0])]}, not {kept_name}: few refills "
            "can be expected to keep the target.")
shown = st.selectbox("Show the refilled images of", chosen, format_func=label, key=state.EVAL_SHOWN_METHOD)
report = reports[shown]
for fill, reason in report.skipped.items():
    st.caption(f"**{fill}**: skipped, {reason}.")
single = [f for f in fills if f in report.results and len(report.results[f].images) == 1]
places = dict(zip(single, st.columns(max(len(single), 1)) if single else []))  # one-image fills side by side
for fill in fills:
    if fill not in report.results:
        continue
    result = report.results[fill]
    with places.get(fill) or st.container():
        kept = int((result.predicted[:, 0] == report.target[0]).sum())
        st.markdown(f"**{fill}**: {kept} of {len(result.predicted)} refills kept **{kept_name}** "
                    f"({result.fraction:.0%})")
        count = min(SHOWN_REFILLS, len(result.images))
        st.image([views.image_array(result.images[i, 0]) for i in range(count)], width=112,
                 caption=[classes[int(result.predicted[i, 0])] for i in range(count)])
