"""Data set: one audit folder (`python -m engines.audit`) as a whole. The per-method summary and
each metric's distribution; per method, the images where the map is most and least faithful;
per class, the maps clustered by similarity (SpRAy, Lapuschkin et al. 2019, "Unmasking Clever
Hans predictors"), so a group of images on which the model looks elsewhere than the object
stands out; and the page as an HTML file."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # also runs on its own: streamlit run dashboard/app_pages/dataset.py
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

import engines  # noqa: E402
from dashboard import dataset_views, resources, state  # noqa: E402

METRIC_NAMES = {"deletion_auc": "Deletion AUC", "insertion_auc": "Insertion AUC",
                "road_most_auc": "ROAD AUC, most relevant first", "road_least_auc": "ROAD AUC, least relevant first",
                "allegiance_black_auc": "Allegiance AUC, black", "allegiance_white_auc": "Allegiance AUC, white",
                "pointing_game": "Pointing game", "pointing_game_tolerant": "Pointing game (15 px at 224²)",
                "relevance_mass": "Relevance mass"}
CLUSTER_CHOICES = ["auto", 2, 3, 4, 5, 6, 7, 8]
EXAMPLES = 4  # example images per cluster


def label(method: str) -> str:
    try:
        return engines.method_info(method).label
    except (KeyError, ValueError):
        return method


def heading(metric: str) -> str:
    return f"{METRIC_NAMES[metric]} ({'↓' if engines.LOWER_IS_BETTER[metric] else '↑'} better)"


st.title("Data set")
st.caption("The results of a folder audit (`python -m engines.audit FOLDER --out DIR`): how faithful each method's "
           "maps are over the whole data set, where they fail, and which groups of images the model treats alike.")

root = engines.audits_root()
names = engines.list_audits(root)
if not names:
    st.info(f"No audit folder under `{root}` yet. Make one with `python -m engines.audit FOLDER --out {root}/NAME` "
            f"(or point the environment variable `{engines.AUDITS_VARIABLE}` at the folder that holds "
            "your audits), then reload this page.")
    st.stop()
name = st.selectbox("Audit folder", names, key=state.DATASET_FOLDER,
                    help=f"The audits under {root}; set {engines.AUDITS_VARIABLE} to choose another root.")
stamp = resources.audit_stamp(str(root), name)
try:
    audit = resources.audit(str(root), name, stamp)
except engines.AuditFolderError as error:
    st.error(str(error))
    st.stop()
run = audit.run
images = len({row["image"] for row in audit.rows})
facts = (f"Model {audit.model}, {images} images, {len(audit.methods)} methods"
         f"{', audited on ' + run['device'] if run.get('device') else ''}"
         f"{', ' + run['date'] if run.get('date') else ''}"
         f"{'' if run.get('finished', True) else ' (the last run was stopped: these are the images done so far)'}.")
st.markdown(facts)
if audit.bad_files:
    with st.expander(f"{len(audit.bad_files)} files skipped"):
        st.dataframe(pd.DataFrame(audit.bad_files), hide_index=True, width="stretch")
if not audit.rows:
    st.info("This audit has no results yet; run it (again) to fill it.")
    st.stop()

# ---------------------------------------------------------------- summary and distributions
st.header("Summary per method")
summary_rows = []
for entry in audit.summary:
    row = {"Method": label(entry["method"]), "Images": entry["images"], "Errors": entry["errors"]}
    for metric in engines.AUDIT_METRICS:
        row[heading(metric)] = entry[metric]["mean"]
        row[f"± {METRIC_NAMES[metric]}"] = entry[metric]["stderr"]
    row["Seconds per map"] = entry["seconds"]["mean"]
    summary_rows.append(row)
st.dataframe(pd.DataFrame(summary_rows), hide_index=True, width="stretch",
             column_config={column: st.column_config.NumberColumn(format="%.3f") for column in summary_rows[0]
                            if column not in ("Method", "Images", "Errors")})
st.caption("Means over the images (localisation metrics: over the images with a mask), ± their standard error. "
           "Deletion and allegiance: lower is better; insertion, pointing game, relevance mass: higher is better.")

charts = []
shown_metrics = [m for m in engines.AUDIT_METRICS if any(audit.values(method, m) for method in audit.methods)]
columns = st.columns(2)
for index, metric in enumerate(shown_metrics):
    figure = dataset_views.metric_boxes({label(m): audit.values(m, metric) for m in audit.methods},
                                        title=heading(metric))
    charts.append((heading(metric), figure))
    with columns[index % 2]:
        st.plotly_chart(figure, width="stretch", key=f"dataset.box.{metric}")

# ---------------------------------------------------------------- most and least faithful
st.header("Most and least faithful maps")
controls = st.columns([2, 1])
metric = controls[0].selectbox("Rank the images by", shown_metrics, format_func=heading, key=state.DATASET_METRIC)
count = controls[1].slider("Images at each end", 1, 8, 4, key=state.DATASET_COUNT)
galleries = []


def gallery(rows: list[dict], method: str) -> list[tuple]:
    tiles = []
    for row in rows:
        try:
            saved = resources.saved_map(str(root), name, stamp, row["image"], method)
        except engines.AuditFolderError as error:
            st.warning(str(error))
            continue
        tiles.append((dataset_views.tile(saved.image, saved.map, saved.signed),
                      f"{row['image']} · {row['predicted_name']} · {float(row[metric]):.3f}"))
    return tiles


for method in audit.methods:
    best, worst = audit.extremes(method, metric, count)
    if not best:
        continue
    st.subheader(label(method))
    for title, rows in (("Most faithful", best), ("Least faithful", worst)):
        tiles = gallery(rows, method)
        if tiles:
            st.markdown(f"**{title}** by {heading(metric)}")
            st.image([t[0] for t in tiles], caption=[t[1] for t in tiles], width=150)
            galleries.append((f"{label(method)}: {title.lower()} by {METRIC_NAMES[metric]}", tiles))

# ---------------------------------------------------------------- clusters per class (SpRAy)
st.header("Maps clustered by similarity, per class")
st.caption("Spectral relevance analysis (Lapuschkin et al. 2019): the maps of one class are downsized to 16 × 16, "
           "compared, and clustered spectrally; the number of clusters is where the eigengap is largest unless you "
           "choose it. Each cluster is shown by its members' mean map (over their mean image) and the members nearest "
           "its centre. A cluster whose mean map lies away from the object is a strategy worth a look.")
controls = st.columns(3)
cluster_method = controls[0].selectbox("Method", audit.methods, format_func=label, key=state.DATASET_CLUSTER_METHOD)
classes = audit.classes(cluster_method)
counts = dict(classes)
if not classes:
    st.info(f"{label(cluster_method)} has no error-free map in this audit.")
    st.stop()
class_name = controls[1].selectbox("Predicted class", [c for c, _ in classes], key=state.DATASET_CLASS,
                                   format_func=lambda c: f"{c} ({counts[c]} images)")
wanted = controls[2].selectbox("Clusters", CLUSTER_CHOICES, key=state.DATASET_CLUSTERS,
                               help="auto: chosen by the eigengap of the maps' similarity graph.")
try:
    grouped = resources.class_clusters(str(root), name, stamp, cluster_method, class_name,
                                       None if wanted == "auto" else int(wanted))
except (engines.AuditFolderError, ValueError) as error:
    st.error(f"These maps cannot be clustered: {error}")
    st.stop()
found = grouped.clusters
if grouped.total > len(grouped.images):
    st.caption(f"{len(grouped.images)} of the class's {grouped.total} images, evenly spaced, were clustered.")
if found.eigenvalues.size:
    figure = dataset_views.spectrum(found.eigenvalues, found.count)
    charts.append((f"{label(cluster_method)}, {class_name}: eigenvalues", figure))
    st.plotly_chart(figure, width="stretch", key="dataset.spectrum")
else:
    st.caption("Fewer than four images: shown as one group.")
for k in range(found.count):
    mean = dataset_views.tile(grouped.mean_images[k], found.means[k], False)
    members = [grouped.images[i] for i in found.examples[k][:EXAMPLES]]
    tiles = [(mean, f"cluster {k + 1}: mean of {found.sizes[k]} maps")]
    for image in members:
        saved = resources.saved_map(str(root), name, stamp, image, cluster_method)
        tiles.append((dataset_views.tile(saved.image, saved.map, saved.signed), image))
    st.markdown(f"**Cluster {k + 1}**: {found.sizes[k]} images")
    st.image([t[0] for t in tiles], caption=[t[1] for t in tiles], width=150)
    galleries.append((f"{label(cluster_method)}, {class_name}: cluster {k + 1} ({found.sizes[k]} images)", tiles))

# ---------------------------------------------------------------- export
st.header("Export")


def report() -> str:
    """Made on the click only: plotly.js inline makes the file about 5 MB."""
    return dataset_views.html_report(title=f"Audit {name}", facts=facts, charts=charts, galleries=galleries,
                                     tables=[("Summary per method", summary_rows), ("Files skipped", audit.bad_files)])


st.download_button("Download this page as HTML", report, file_name=f"audit-{Path(name).name or 'root'}.html",
                   mime="text/html", key=state.DATASET_EXPORT,
                   help="Tables, interactive figures and images in one file that opens offline.")
